"""Redis clients, built in one place for every process: from a URL, or through Sentinel.

Calls have short timeouts and as few retries as the caller asks for (redis-py's defaults
wait for seconds on a dead or hung Redis); what a failure means is the caller's business.
Through Sentinel, each new connection asks the sentinels where the primary is, so a client
follows a failover: its connections to the old primary fail, and the next ones go to the
primary the sentinels name (an old primary that came back as a replica answers writes with
READONLY, which closes the connection, so that the next one asks again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.retry import Retry


class RedisLocation(Protocol):
    """Where Redis is: the settings' fields of that name (``MQGATE_REDIS_*``)."""

    @property
    def redis_url(self) -> str: ...

    @property
    def redis_sentinels(self) -> list[str]: ...

    @property
    def redis_primary_name(self) -> str: ...

    @property
    def redis_sentinel_password(self) -> str: ...


def redis_client(where: RedisLocation, *, timeout: float, retries: int = 0) -> aioredis.Redis:
    """A client that decodes answers to str; ``timeout`` bounds connecting and each call,
    ``retries`` is how often a failed call is tried again at once. With sentinels, the URL
    gives only the credentials, the database and TLS; its host and port are not used."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), retries),
        "health_check_interval": 0,
    }
    if not where.redis_sentinels:
        return aioredis.from_url(where.redis_url, **options)
    asking: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                              "retry": Retry(NoBackoff(), 0)}  # a sentinel, that is
    if where.redis_sentinel_password:
        asking["password"] = where.redis_sentinel_password
    addresses = [sentinel_address(a) for a in where.redis_sentinels]
    sentinels = Sentinel(addresses, sentinel_kwargs=asking)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinels.master_for(
        where.redis_primary_name, redis_class=SentinelRedis,
        **_credentials(where.redis_url), **options)
    return client


def redis_at_url(url: str, *, timeout: float, retries: int = 0) -> aioredis.Redis:
    """``redis_client`` for a Redis known by its URL alone."""
    return redis_client(_Url(url), timeout=timeout, retries=retries)


@dataclass(frozen=True)
class _Url:
    redis_url: str
    redis_sentinels: list[str] = field(default_factory=list)
    redis_primary_name: str = ""
    redis_sentinel_password: str = ""


def sentinel_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _credentials(url: str) -> dict[str, Any]:
    """What of a Redis URL applies to whichever server is the primary."""
    parsed = parse_url(url)
    found: dict[str, Any] = {key: parsed[key] for key in ("username", "password", "db")
                             if key in parsed}
    if parsed.get("connection_class") is SSLConnection:
        found["ssl"] = True
    return found


class SentinelRedis(aioredis.Redis):
    """A client of the primary that Sentinel names; closing it closes its connections to
    the sentinels too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()
