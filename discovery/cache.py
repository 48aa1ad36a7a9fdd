"""Key-value caches with expiry, and notices: Redis for a fleet, memory for one process.

Redis is only ever a cache here: every failure reads as a miss, calls have short timeouts, no
blind retries, and after a failure Redis is skipped for a short while so that a dead or hung
Redis costs one timeout, not one per lookup. Notices (Redis pub/sub) are at most once: a
subscriber is told each time it (re)attaches, since what was published meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runtime.redis import redis_at_url

log = logging.getLogger(__name__)

NoticeHandler = Callable[[str], Awaitable[None]]
AttachHandler = Callable[[], Awaitable[None]]
_IDLE_PING = 30.0  # seconds without a notice before a subscriber checks its connection


class Cache(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, ttl: float) -> int | None:
        """Add one to the counter at ``key`` (kept ``ttl`` seconds after its last change);
        None when the cache is unreachable."""
        ...

    async def ping(self) -> bool: ...

    def subscribe(self, channel: str, on_notice: NoticeHandler,
                  on_attach: AttachHandler) -> None:
        """Call ``on_notice`` with every notice published on ``channel`` from now on, and
        ``on_attach`` whenever listening (re)starts: notices published while nothing listened
        are lost. Listening lasts until ``aclose``; needs a running event loop."""
        ...

    async def publish(self, channel: str, message: str) -> None:
        """Hand ``message`` to the subscribers of ``channel`` listening now, at most once;
        nothing when the cache is unreachable."""
        ...

    async def aclose(self) -> None: ...


class MemoryCache:
    """A process-local cache with the same semantics as the Redis one. Expired entries go when
    read, and in a sweep every ``sweep_every`` writes, so keys never read again (a cancelled
    job's mark, say) do not pile up in a long-running process."""

    def __init__(self, *, sweep_every: int = 1024) -> None:
        self._items: dict[str, tuple[float, str]] = {}
        self._subscribers: dict[str, list[NoticeHandler]] = {}
        self._sweep_every = sweep_every
        self._writes = 0

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
        now = time.monotonic()
        self._items[key] = (now + ttl, value)
        self._writes += 1
        if self._writes % self._sweep_every == 0:
            self._items = {k: item for k, item in self._items.items() if item[0] >= now}

    def __len__(self) -> int:
        return len(self._items)

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)

    async def incr(self, key: str, ttl: float) -> int | None:
        count = int(await self.get(key) or 0) + 1
        await self.set(key, str(count), ttl)
        return count

    async def ping(self) -> bool:
        return True

    def subscribe(self, channel: str, on_notice: NoticeHandler,
                  on_attach: AttachHandler) -> None:
        """Listening here starts at once and never lapses, so ``on_attach`` has no news."""
        self._subscribers.setdefault(channel, []).append(on_notice)

    async def publish(self, channel: str, message: str) -> None:
        """Hand ``message`` to every subscriber of ``channel`` in this process."""
        for handler in list(self._subscribers.get(channel, ())):
            await handler(message)

    async def aclose(self) -> None:
        self._items.clear()
        self._subscribers.clear()


class RedisCache:
    """``redis`` is a URL, or a client from ``runtime.redis.redis_client`` (Redis behind
    Sentinel, say), which the cache then owns and closes."""

    def __init__(self, redis: str | aioredis.Redis, *, timeout: float = 0.1,
                 backoff: float = 1.0) -> None:
        if isinstance(redis, str):
            redis = redis_at_url(redis, timeout=timeout)
        self._redis = redis
        self._backoff = backoff
        self._skip_until = 0.0
        self._listeners: set[asyncio.Task[None]] = set()
        self._closed = False

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

    async def incr(self, key: str, ttl: float) -> int | None:
        if not self._available():
            return None
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.pexpire(key, max(1, int(ttl * 1000)))
                count, _ = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("incr", exc)
            return None
        return int(count)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def publish(self, channel: str, message: str) -> None:
        if not self._available():
            return
        try:
            await self._redis.publish(channel, message)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("publish", exc)

    def subscribe(self, channel: str, on_notice: NoticeHandler,
                  on_attach: AttachHandler) -> None:
        task = asyncio.create_task(self._listen(channel, on_notice, on_attach))
        self._listeners.add(task)
        task.add_done_callback(self._listeners.discard)

    async def _listen(self, channel: str, on_notice: NoticeHandler,
                      on_attach: AttachHandler) -> None:
        """Subscribe, and again after every failure, one ``backoff`` later."""
        failures = 0  # in a row: only the first is worth a warning

        async def attached() -> None:
            nonlocal failures
            failures = 0
            await on_attach()

        while not self._closed:
            try:
                await self._listen_once(channel, on_notice, attached)
            except (RedisError, OSError, TimeoutError) as exc:
                if self._closed:
                    return
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "no subscription to %s, retrying every %.1fs: %s", channel,
                        self._backoff, type(exc).__name__)
            await asyncio.sleep(self._backoff)

    async def _listen_once(self, channel: str, on_notice: NoticeHandler,
                           on_attach: AttachHandler) -> None:
        loop = asyncio.get_running_loop()
        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(channel)
            await on_attach()
            while not self._closed:
                began = loop.time()
                message = await pubsub.get_message(timeout=_IDLE_PING)
                if message is not None and message.get("type") == "message":
                    await on_notice(str(message["data"]))
                elif message is None and loop.time() - began >= _IDLE_PING:
                    await pubsub.ping()  # a connection that died quietly fails here

    async def aclose(self) -> None:
        self._closed = True
        listeners = list(self._listeners)
        for task in listeners:
            task.cancel()
        if listeners:
            # redis-py can lose a cancellation (asyncio.wait_for on Python 3.11); such a
            # listener ends at its next turn, at the latest when the connection closes below
            await asyncio.wait(listeners, timeout=self._backoff)
        await self._redis.aclose()
