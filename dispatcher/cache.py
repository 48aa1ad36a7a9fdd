"""Key-value caches with expiry: Redis for a fleet, memory for one process.

Redis is only ever a cache here: every failure reads as a miss, calls have short timeouts, no
blind retries, and after a failure Redis is skipped for a short while so that a dead or hung
Redis costs one timeout, not one per lookup.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

log = logging.getLogger(__name__)


class Cache(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...


class MemoryCache:
    """A process-local cache with the same semantics as the Redis one."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, str]] = {}

    async def get(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            self._items.pop(key, None)
            return None
        return value

    async def set(self, key: str, value: str, ttl: float) -> None:
        self._items[key] = (time.monotonic() + ttl, value)

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._items.clear()


class RedisCache:
    def __init__(self, url: str, *, timeout: float = 0.1, backoff: float = 1.0) -> None:
        self._redis = aioredis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._backoff = backoff
        self._skip_until = 0.0

    def _available(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _failed(self, op: str, exc: Exception) -> None:
        self._skip_until = time.monotonic() + self._backoff
        log.warning("redis %s failed, skipping redis for %.1fs: %s", op, self._backoff,
                    type(exc).__name__)

    async def get(self, key: str) -> str | None:
        if not self._available():
            return None
        try:
            value = await self._redis.get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("get", exc)
            return None
        return value if isinstance(value, str) else None

    async def set(self, key: str, value: str, ttl: float) -> None:
        if not self._available():
            return
        try:
            await self._redis.set(key, value, px=max(1, int(ttl * 1000)))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("set", exc)

    async def delete(self, key: str) -> None:
        if not self._available():
            return
        try:
            await self._redis.delete(key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("delete", exc)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()
