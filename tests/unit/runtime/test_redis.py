"""Redis clients from the settings: a URL, or the primary that Sentinel names, with the short
timeouts and no retries every process relies on (no I/O here)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.asyncio.sentinel import SentinelConnectionPool

from contracts.settings import Settings
from runtime.redis import SentinelRedis, redis_client


async def test_a_url_alone_is_that_server_with_short_timeouts() -> None:
    client = redis_client(Settings(redis_url="redis://:pw@cache.example:6380/2"), timeout=0.1)
    try:
        options = client.connection_pool.connection_kwargs
        assert (options["host"], options["port"], options["db"]) == ("cache.example", 6380, 2)
        assert options["socket_timeout"] == options["socket_connect_timeout"] == 0.1
        assert options["retry"].get_retries() == 0
        assert not isinstance(client, SentinelRedis)
    finally:
        await client.aclose()


async def test_with_sentinels_the_primary_is_found_through_them() -> None:
    settings = Settings(redis_url="rediss://app:pw@ignored:1/3",
                        redis_sentinels="s1.example:26379, [::1]:26380",
                        redis_primary_name="cache", redis_sentinel_password="spw")
    client = redis_client(settings, timeout=0.2, retries=1)
    try:
        assert isinstance(client, SentinelRedis)
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "cache"
        options = pool.connection_kwargs  # for connections to whichever server is primary
        assert (options["username"], options["password"], options["db"]) == ("app", "pw", 3)
        assert "host" not in options
        assert options["socket_timeout"] == 0.2
        assert options["retry"].get_retries() == 1
        assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
        asked = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
        assert [(a["host"], a["port"]) for a in asked] == [("s1.example", 26379), ("::1", 26380)]
        assert {a["password"] for a in asked} == {"spw"}
        assert {a["socket_timeout"] for a in asked} == {0.2}
    finally:
        await client.aclose()  # the sentinels' clients too


def test_sentinel_addresses_need_a_port() -> None:
    with pytest.raises(ValidationError, match="host:port"):
        Settings(redis_sentinels="sentinel.example")


def test_the_broker_url_lists_nodes_by_commas() -> None:
    nodes = Settings(amqp_url="amqp://u:p@a:5672/, amqp://u:p@b:5672/,").amqp_urls
    assert nodes == ["amqp://u:p@a:5672/", "amqp://u:p@b:5672/"]
    with pytest.raises(ValidationError, match="no broker URL"):
        Settings(amqp_url=" , ")
