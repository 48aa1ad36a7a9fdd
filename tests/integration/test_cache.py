from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from contracts.settings import Settings
from discovery.cache import RedisCache
from tests.waiting import eventually

pytestmark = pytest.mark.integration


async def test_values_expire(settings: Settings) -> None:
    cache = RedisCache(settings.redis_url)
    key = settings.topology.redis_key("t", "k")
    await cache.set(key, "v", 0.2)
    assert await cache.get(key) == "v"
    raw = aioredis.from_url(settings.redis_url)
    try:
        assert 0 < await raw.pttl(key) <= 200  # Redis drops it 0.2 s after it was set
    finally:
        await raw.aclose()

    async def gone() -> bool:
        return await cache.get(key) is None

    await eventually(gone, timeout=10, what=f"{key} to expire")
    await cache.aclose()


async def test_unreachable_redis_is_a_fast_miss() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", timeout=0.1)
    started = time.monotonic()
    assert await cache.get("k") is None
    await cache.set("k", "v", 1)
    assert await cache.get("k") is None  # skipped while backing off
    assert time.monotonic() - started < 1.0
    assert not await cache.ping()
    await cache.aclose()


async def test_notices_reach_a_subscriber_once_it_is_attached(settings: Settings) -> None:
    cache = RedisCache(settings.redis_url)
    channel = settings.topology.redis_key("t", "notices")
    attached, received = asyncio.Event(), asyncio.Queue[str]()

    async def on_attach() -> None:
        attached.set()

    cache.subscribe(channel, received.put, on_attach)
    publisher = aioredis.from_url(settings.redis_url)
    try:
        async with asyncio.timeout(10):
            await attached.wait()
            await publisher.publish(channel, "hello")
            assert await received.get() == "hello"
    finally:
        await publisher.aclose()
        await cache.aclose()
