"""Worker slots in a real Redis, shared by two dispatchers (two clients, two caches)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AsyncExitStack

import pytest
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from contracts.errors import NoWorkerError
from contracts.settings import Settings
from discovery.cache import RedisCache
from dispatcher.capacity import WorkerCapacity
from dispatcher.capacity_store import RedisSlotStore, SlotStoreError

pytestmark = pytest.mark.integration

W1, W2 = "http://w1:1", "http://w2:2"
NEVER = 60.0  # a recheck interval no test waits for: waiting calls must be woken by notices


class Workers:
    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)

    async def candidates(self, model: str, exclude: AbstractSet[str]) -> list[str]:
        found = [a for a in self.addresses if a not in exclude]
        if not found:
            raise NoWorkerError(f"no worker serves model {model!r}")
        return found


class RenewalsSeen(RedisSlotStore):
    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        super().__init__(client, settings.topology)
        self.renewals = 0
        self.renewed = asyncio.Event()

    async def renew(self, address: str, holder: str, ttl: float) -> bool:
        held = await super().renew(address, holder, ttl)
        self.renewals += 1
        self.renewed.set()
        return held


def client(url: str) -> aioredis.Redis:
    return aioredis.from_url(url, decode_responses=True, socket_timeout=2,
                             socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))


class Dispatchers:
    """Each dispatcher as in production: its own Redis client for slots, its own cache."""

    def __init__(self, stack: AsyncExitStack, settings: Settings) -> None:
        self._stack = stack
        self.settings = settings

    def store(self, url: str | None = None) -> RenewalsSeen:
        store = RenewalsSeen(client(url or self.settings.redis_url), self.settings)
        self._stack.push_async_callback(store.aclose)
        return store

    def capacity(self, *addresses: str, store: RedisSlotStore | None = None,
                 recheck: float = NEVER, **overrides: object) -> WorkerCapacity:
        cache = RedisCache(self.settings.redis_url)
        self._stack.push_async_callback(cache.aclose)
        settings = self.settings.model_copy(update=overrides)
        return WorkerCapacity(Workers(*(addresses or (W1,))), store or self.store(), cache,
                              settings, recheck=recheck)


@pytest.fixture
async def dispatchers(settings: Settings) -> AsyncIterator[Dispatchers]:
    async with AsyncExitStack() as stack:
        yield Dispatchers(stack, settings)


async def hold_many(capacities: Sequence[WorkerCapacity], calls: int) -> dict[str, int]:
    """Run ``calls`` calls spread over ``capacities``; the most running at once per worker."""
    running: dict[str, int] = {}
    most: dict[str, int] = {}

    async def call(i: int) -> None:
        async with capacities[i % len(capacities)].slot("m", set()) as address:
            running[address] = running.get(address, 0) + 1
            most[address] = max(most.get(address, 0), running[address])
            await asyncio.sleep(0.01 * (i % 3))  # a call takes a while
            running[address] -= 1

    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        for i in range(calls):
            group.create_task(call(i))
    return most


async def test_two_dispatchers_never_exceed_a_workers_limit(dispatchers: Dispatchers) -> None:
    store = dispatchers.store()
    capacities = [dispatchers.capacity(W1, W2, store=store, worker_concurrency=5),
                  dispatchers.capacity(W1, W2, worker_concurrency=5)]
    assert await hold_many(capacities, 60) == {W1: 5, W2: 5}
    assert await store.held(W1) == await store.held(W2) == 0


async def test_slots_of_a_holder_that_stopped_renewing_come_back(
        dispatchers: Dispatchers, settings: Settings) -> None:
    dead = dispatchers.store()
    for i in range(5):  # a dispatcher that died holding every slot, on a 1 s lease
        assert await dead.acquire([W1], f"dead-{i}", 5, 1.0) == W1
    key = settings.topology.slots_key(W1)
    redis = client(settings.redis_url)
    try:
        assert 0 < await redis.pttl(key) <= 1000  # the key goes with its last lease
    finally:
        await redis.aclose()
    alive = dispatchers.capacity(W1, recheck=0.2)
    all_held = asyncio.Barrier(5)

    async def hold() -> str:
        async with alive.slot("m", set()) as address:
            await all_held.wait()  # every one of the five slots is held at once
            return address

    async with asyncio.timeout(30):
        assert await asyncio.gather(*(hold() for _ in range(5))) == [W1] * 5


async def test_a_lease_lives_while_it_is_renewed(dispatchers: Dispatchers) -> None:
    store = dispatchers.store()
    holder = dispatchers.capacity(W1, store=store, worker_concurrency=1, lease_ttl=0.3)
    other = dispatchers.store()
    async with asyncio.timeout(30), holder.slot("m", set()):
        while store.renewals < 4:  # by then the lease had ended but for its renewals
            store.renewed.clear()
            await store.renewed.wait()
        assert await other.acquire([W1], "other", 1, 60) is None
    assert await other.acquire([W1], "other", 1, 60) == W1


async def test_unreachable_redis_fails_fast_and_each_dispatcher_counts_alone(
        dispatchers: Dispatchers) -> None:
    store = dispatchers.store("redis://127.0.0.1:1/0")
    with pytest.raises(SlotStoreError):
        await store.acquire([W1], "h", 5, 60)
    with pytest.raises(SlotStoreError):  # skipped at once while backing off
        await store.held(W1)
    capacity = dispatchers.capacity(W1, store=store, recheck=0.05, worker_concurrency=2)
    assert await hold_many([capacity], 6) == {W1: 2}
