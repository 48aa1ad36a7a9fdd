"""Worker slots: a worker never runs more calls at once than its limit, whichever dispatchers
send them.

Each call to a worker holds a slot: a lease in the slot store, renewed while the call runs and
given back when it ends, so that a dispatcher that dies gives its slots back when its leases
end. A call that finds every worker of its model full waits (bounded by its job's deadline)
until a slot is given back, which dispatchers announce on the cache's notices, or at most
``recheck`` seconds, since a lease that ends announces nothing. The capacity belongs to the
worker's address, whichever model names it serves; the limit is the called model's.

When the store does not answer, each dispatcher counts its own calls against the limit: the
limit then holds per dispatcher, not across them, until the store answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Protocol

from contracts.errors import NoWorkerError
from contracts.settings import Settings
from discovery.cache import Cache
from dispatcher.capacity_store import SlotStore, SlotStoreError
from dispatcher.metrics import SLOT_WAITING, SLOT_WAITS

log = logging.getLogger(__name__)

RECHECK = 1.0  # seconds a waiting call goes without looking again


class WorkerCandidates(Protocol):
    async def candidates(self, model: str, exclude: AbstractSet[str]) -> list[str]:
        """The workers of ``model`` to try, preferred first; NoWorkerError when none."""
        ...


@dataclass(eq=False, slots=True)
class _Waiter:
    addresses: frozenset[str] = frozenset()
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    freed: str | None = None  # the worker whose freed slot woke it


@dataclass(eq=False, slots=True)
class _Lease:
    address: str
    holder: str
    shared: bool  # whether the store holds it (it was taken there, or renewed there since)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerCapacity:
    """Takes, holds and gives back worker slots for one dispatcher."""

    def __init__(self, workers: WorkerCandidates, store: SlotStore, cache: Cache,
                 settings: Settings, *, recheck: float = RECHECK) -> None:
        self._workers = workers
        self._store = store
        self._cache = cache
        self._limit = settings.worker_limit
        self._ttl = settings.lease_ttl
        self._channel = settings.topology.slots_freed_channel
        self._recheck = recheck
        self._id = uuid.uuid4().hex[:12]
        self._serial = itertools.count(1)
        self._in_flight: Counter[str] = Counter()  # this dispatcher's calls per worker
        self._waiters: list[_Waiter] = []  # in the order they began to wait
        self._listening = False
        self._shared = True  # whether the store answered last time

    async def total_slots(self, model: str) -> int:
        """How many calls the workers of ``model`` take at once, all dispatchers together:
        the model's limit for each of its healthy workers, 0 when none is reachable. A
        worker that serves several models is counted for each of them."""
        try:
            addresses = await self._workers.candidates(model, frozenset())
        except NoWorkerError:
            return 0
        return self._limit(model) * len(addresses)

    @contextlib.asynccontextmanager
    async def slot(self, model: str, exclude: AbstractSet[str], *,
                   metered: bool = True) -> AsyncIterator[str]:
        """A worker of ``model`` not in ``exclude``, with a slot held there until the block
        ends: the least busy one with a slot free, waited for while there is none. A call
        that is not ``metered`` (counting tokens queues at no worker) takes no slot."""
        if not metered:
            yield min(await self._workers.candidates(model, exclude),
                      key=self._in_flight.__getitem__)
            return
        lease = await self._acquire(model, exclude)
        keeping = asyncio.create_task(self._keep(lease))
        try:
            yield lease.address
        finally:
            await self._release(lease, keeping)

    # --- taking a slot ----------------------------------------------------------------------

    async def _acquire(self, model: str, exclude: AbstractSet[str]) -> _Lease:
        if not self._listening:
            self._listening = True
            self._cache.subscribe(self._channel, self._on_freed, self._on_attached)
        limit = self._limit(model)
        holder = f"{self._id}:{next(self._serial)}"
        waiter = _Waiter()
        self._waiters.append(waiter)  # before the first look: no slot freed meanwhile is missed
        lease: _Lease | None = None
        waited = False
        try:
            while True:
                waiter.woken.clear()
                waiter.freed = None
                addresses = await self._workers.candidates(model, exclude)
                waiter.addresses = frozenset(addresses)
                lease = await self._take(addresses, holder, limit)
                if lease is not None:
                    return lease
                if not waited:
                    waited = True
                    SLOT_WAITS.labels(model=model).inc()
                    SLOT_WAITING.labels(model=model).inc()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._recheck):
                        await waiter.woken.wait()
        finally:
            self._waiters.remove(waiter)
            if waited:
                SLOT_WAITING.labels(model=model).dec()
            if waiter.woken.is_set() and waiter.freed is not None and (
                    lease is None or lease.address != waiter.freed):
                self._wake(waiter.freed)  # a freed slot it did not take goes to the next one

    async def _take(self, addresses: Sequence[str], holder: str, limit: int) -> _Lease | None:
        """A slot on the least busy of ``addresses``: as the store counts them, or as this
        dispatcher does while the store does not answer."""
        try:
            address = await self._store.acquire(addresses, holder, limit, self._ttl)
        except SlotStoreError:
            self._store_lost()
            free = [a for a in addresses if self._in_flight[a] < limit]
            address = min(free, key=self._in_flight.__getitem__, default=None)
            shared = False
        else:
            self._store_found()
            shared = True
        if address is None:
            return None
        self._in_flight[address] += 1
        return _Lease(address, holder, shared)

    # --- holding and giving back ------------------------------------------------------------

    async def _keep(self, lease: _Lease) -> None:
        """Renew ``lease`` every third of its time until it is given back. A lease taken while
        the store did not answer is entered there once it does."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ttl / 3):
                    await lease.done.wait()
            if lease.done.is_set():
                return
            try:
                held = await self._store.renew(lease.address, lease.holder, self._ttl)
            except SlotStoreError:
                self._store_lost()
                continue
            self._store_found()
            if not held and lease.shared:
                log.warning("a slot lease on %s had ended while its call ran (this dispatcher "
                            "stalled for longer than MQGATE_LEASE_TTL?); taken again",
                            lease.address)
            lease.shared = True

    async def _release(self, lease: _Lease, keeping: asyncio.Task[None]) -> None:
        self._in_flight[lease.address] -= 1
        if self._in_flight[lease.address] <= 0:
            del self._in_flight[lease.address]
        lease.done.set()
        # a renewal under way ends first, so that none lands after the release; cancelled
        # again meanwhile, the lease is not given back and ends by itself
        await keeping
        with contextlib.suppress(SlotStoreError):  # else the lease ends by itself
            await self._store.release(lease.address, lease.holder)
        self._wake(lease.address)
        await self._cache.publish(self._channel, f"{self._id} {lease.address}")

    # --- waking waiting calls ---------------------------------------------------------------

    def _wake(self, address: str) -> None:
        """Wake the longest-waiting call that may use ``address``."""
        for waiter in self._waiters:
            if not waiter.woken.is_set() and address in waiter.addresses:
                waiter.freed = address
                waiter.woken.set()
                return

    async def _on_freed(self, notice: str) -> None:
        sender, _, address = notice.partition(" ")
        if sender != self._id and address:
            self._wake(address)

    async def _on_attached(self) -> None:
        """Notices may have been missed: every waiting call looks again."""
        for waiter in self._waiters:
            waiter.woken.set()

    def _store_lost(self) -> None:
        if self._shared:
            self._shared = False
            log.warning("the slot store does not answer: until it does, worker limits are "
                        "counted by this dispatcher alone, so they hold per dispatcher, not "
                        "across them")

    def _store_found(self) -> None:
        if not self._shared:
            self._shared = True
            log.info("the slot store answers again: worker limits hold across dispatchers")
