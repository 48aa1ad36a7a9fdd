"""Worker slots: limits, waiting, giving back, least-busy choice and the store failing."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import pytest
from prometheus_client import REGISTRY

from contracts.errors import NoWorkerError, WorkerError
from contracts.settings import Settings
from discovery.cache import MemoryCache
from dispatcher.capacity import WorkerCapacity
from dispatcher.capacity_store import MemorySlotStore, SlotStoreError

W1, W2 = "http://w1:1", "http://w2:2"
NEVER = 60.0  # a recheck interval no test waits for: waiting calls must be woken by notices


class Workers:
    """The resolver's candidates: fixed addresses per model, in this order."""

    def __init__(self, **models: list[str]) -> None:
        self.models = models

    async def candidates(self, model: str, exclude: AbstractSet[str]) -> list[str]:
        found = [a for a in self.models.get(model, []) if a not in exclude]
        if not found:
            raise NoWorkerError(f"no worker serves model {model!r}")
        return found


class WatchedStore(MemorySlotStore):
    """A memory store that tells when it refused a slot or renewed a lease, and can fail."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = asyncio.Event()
        self.renewals = 0
        self.renewed = asyncio.Event()
        self.down = False
        self.failed = asyncio.Event()

    def _check(self) -> None:
        if self.down:
            self.failed.set()
            raise SlotStoreError("down")

    async def acquire(self, addresses: Sequence[str], holder: str, limit: int,
                      ttl: float) -> str | None:
        self._check()
        address = await super().acquire(addresses, holder, limit, ttl)
        if address is None:
            self.refused.set()
        return address

    async def renew(self, address: str, holder: str, ttl: float) -> bool:
        self._check()
        held = await super().renew(address, holder, ttl)
        self.renewals += 1
        self.renewed.set()
        return held

    async def release(self, address: str, holder: str) -> None:
        self._check()
        await super().release(address, holder)


def capacity(store: MemorySlotStore, cache: MemoryCache | None = None, *,
             workers: Workers | None = None, recheck: float = NEVER,
             **settings: object) -> WorkerCapacity:
    return WorkerCapacity(workers or Workers(m=[W1]), store, cache or MemoryCache(),
                          Settings(namespace="unit", **settings),  # type: ignore[arg-type]
                          recheck=recheck)


def waiting(model: str) -> float:
    return REGISTRY.get_sample_value("mqgate_dispatcher_slot_waiting", {"model": model}) or 0.0


def waits(model: str) -> float:
    return REGISTRY.get_sample_value("mqgate_dispatcher_slot_waits_total",
                                     {"model": model}) or 0.0


# --- the memory store --------------------------------------------------------------------


async def test_memory_store_gives_at_most_limit_slots_on_the_least_busy_worker() -> None:
    store = MemorySlotStore()
    taken = [await store.acquire([W1, W2], f"h{i}", 2, 60) for i in range(5)]
    assert taken == [W1, W2, W1, W2, None]
    await store.release(W1, "h0")
    assert await store.held(W1) == 1
    assert await store.acquire([W1, W2], "h5", 2, 60) == W1


async def test_memory_store_lease_that_ended_frees_its_slot_and_renewing_takes_it_again(
        ) -> None:
    store = MemorySlotStore()
    assert await store.acquire([W1], "dead", 1, -1) == W1  # a lease that ended at once
    assert await store.held(W1) == 0
    assert await store.acquire([W1], "alive", 1, 60) == W1
    assert not await store.renew(W1, "dead", 60)  # it had ended: counted again, said so
    assert await store.renew(W1, "alive", 60)
    assert await store.held(W1) == 2


# --- waiting for a slot ------------------------------------------------------------------


async def test_a_call_waits_while_the_worker_is_full_and_goes_when_a_slot_frees() -> None:
    store = WatchedStore()
    slots = capacity(store, worker_concurrency=1)
    before = waits("m")
    entered = asyncio.Event()

    async def second() -> str:
        async with slots.slot("m", set()) as address:
            entered.set()
            return address

    async with asyncio.timeout(10), slots.slot("m", set()) as first:
        task = asyncio.create_task(second())
        await store.refused.wait()
        assert not entered.is_set()
        assert waiting("m") == 1
    assert await asyncio.wait_for(task, 10) == first == W1
    assert waiting("m") == 0
    assert waits("m") == before + 1


async def test_never_more_calls_on_a_worker_than_its_limit_across_dispatchers() -> None:
    store, cache = MemorySlotStore(), MemoryCache()  # shared by two dispatchers
    workers = Workers(m=[W1, W2])
    dispatchers = [capacity(store, cache, workers=workers, worker_concurrency=3)
                   for _ in range(2)]
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()

    async def call(i: int) -> None:
        async with dispatchers[i % 2].slot("m", set()) as address:
            running[address] += 1
            most[address] = max(most[address], running[address])
            for _ in range(i % 5 + 1):
                await asyncio.sleep(0)
            running[address] -= 1

    async with asyncio.timeout(10), asyncio.TaskGroup() as group:
        for i in range(60):
            group.create_task(call(i))
    assert most == {W1: 3, W2: 3}
    assert await store.held(W1) == await store.held(W2) == 0


async def test_the_limit_is_per_model_where_set() -> None:
    store = WatchedStore()
    slots = capacity(store, workers=Workers(big=[W1]), worker_concurrency=1,
                     worker_concurrency_by_model="big=3")
    async with asyncio.timeout(10):
        async with slots.slot("big", set()), slots.slot("big", set()), \
                slots.slot("big", set()):
            assert await store.held(W1) == 3
            assert not store.refused.is_set()


async def test_least_busy_worker_first_counting_every_dispatcher() -> None:
    store = MemorySlotStore()
    for holder in ("other-1", "other-2"):  # another dispatcher's calls on W1
        assert await store.acquire([W1], holder, 5, 60) == W1
    slots = capacity(store, workers=Workers(m=[W1, W2]))
    async with slots.slot("m", set()) as a, slots.slot("m", set()) as b, \
            slots.slot("m", set()) as c:
        assert (a, b, c) == (W2, W2, W1)  # equals: the resolver's preference first


async def test_workers_already_tried_are_not_offered() -> None:
    slots = capacity(MemorySlotStore(), workers=Workers(m=[W1, W2]))
    async with slots.slot("m", {W1}) as address:
        assert address == W2
    with pytest.raises(NoWorkerError):
        async with slots.slot("m", {W1, W2}):
            pass


async def test_counting_tokens_takes_no_slot() -> None:
    store = WatchedStore()
    slots = capacity(store, worker_concurrency=1)
    async with asyncio.timeout(10), slots.slot("m", set()), \
            slots.slot("m", set(), metered=False) as address:
        assert address == W1
        assert await store.held(W1) == 1
    assert not store.refused.is_set()


# --- giving slots back -------------------------------------------------------------------


async def test_a_failed_call_gives_its_slot_back() -> None:
    store = MemorySlotStore()
    slots = capacity(store, worker_concurrency=1)
    with pytest.raises(WorkerError):
        async with slots.slot("m", set()):
            raise WorkerError("boom")
    assert await store.held(W1) == 0


async def test_a_cancelled_call_gives_its_slot_back() -> None:
    store = MemorySlotStore()
    slots = capacity(store, worker_concurrency=1)
    holding = asyncio.Event()

    async def call() -> None:
        async with slots.slot("m", set()):
            holding.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(call())
    await holding.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.held(W1) == 0


async def test_a_waiting_call_that_is_cancelled_leaves_the_slot_to_the_next() -> None:
    store = WatchedStore()
    slots = capacity(store, worker_concurrency=1)
    order: list[str] = []

    async def call(name: str) -> None:
        async with slots.slot("m", set()):
            order.append(name)

    async with asyncio.timeout(10):
        async with slots.slot("m", set()):
            first = asyncio.create_task(call("first"))
            await store.refused.wait()
            store.refused.clear()
            second = asyncio.create_task(call("second"))
            await store.refused.wait()
        first.cancel()  # woken for the freed slot, and cancelled before it could take it
        await second
    assert order in (["second"], ["first", "second"])
    assert waiting("m") == 0


async def test_a_lease_is_renewed_while_its_call_runs() -> None:
    store = WatchedStore()
    slots = capacity(store, worker_concurrency=1, lease_ttl=0.03)
    async with asyncio.timeout(10), slots.slot("m", set()):
        while store.renewals < 4:  # by then the lease had ended but for its renewals
            store.renewed.clear()
            await store.renewed.wait()
        assert await store.held(W1) == 1
    assert await store.held(W1) == 0


# --- the store failing -------------------------------------------------------------------


async def test_without_the_store_each_dispatcher_counts_its_own_calls(
        caplog: pytest.LogCaptureFixture) -> None:
    store = WatchedStore()
    store.down = True
    slots = capacity(store, worker_concurrency=2)
    entered = asyncio.Event()

    async def third() -> None:
        async with slots.slot("m", set()):
            entered.set()

    with caplog.at_level(logging.INFO, logger="dispatcher.capacity"):
        async with asyncio.timeout(10):
            async with slots.slot("m", set()), slots.slot("m", set()):
                store.failed.clear()
                task = asyncio.create_task(third())
                await store.failed.wait()
                assert not entered.is_set()
                assert waiting("m") == 1
            await task
            store.down = False
            async with slots.slot("m", set()):
                assert await store.held(W1) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("does not answer" in m for m in messages) == 1  # said once
    assert sum("answers again" in m for m in messages) == 1


async def test_a_slot_taken_without_the_store_is_entered_there_once_it_answers() -> None:
    store = WatchedStore()
    store.down = True
    slots = capacity(store, lease_ttl=0.03)
    async with asyncio.timeout(10), slots.slot("m", set()):
        store.down = False
        store.renewed.clear()
        await store.renewed.wait()
        assert await store.held(W1) == 1


# --- what the lanes are told -------------------------------------------------------------


async def test_total_slots_of_a_model() -> None:
    slots = capacity(MemorySlotStore(), workers=Workers(m=[W1, W2], big=[W1]),
                     worker_concurrency_by_model="big=8")
    assert await slots.total_slots("m") == 10
    assert await slots.total_slots("big") == 8
    assert await slots.total_slots("none") == 0
