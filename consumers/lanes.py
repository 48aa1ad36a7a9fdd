"""Which models' lanes a dispatcher follows, and how many jobs of each it holds at once.

Every model has its own lane (a queue), so a flood of one model's jobs never stands in front
of another's. A dispatcher follows the lane of every model the controller lists, and holds at
most its share of the model's worker slots: the slots of all the model's workers, divided
among the dispatchers that follow the lane (and never more than ``MQGATE_CONCURRENCY``).
Jobs beyond that stay in the broker, where a ``priority`` job can still overtake them, a
cancel or a deadline still reaches them, and any dispatcher with room can take them.

The lanes are reconciled every few seconds, and at once when the controller announces a
worker's registration: a model that appears is followed, one that disappears is left (its
lane expires once unused), and each share follows the number of dispatchers and workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from contracts.errors import MqgateError
from contracts.settings import Settings
from discovery.cache import Cache

log = logging.getLogger(__name__)

RECONCILE_EVERY = 5.0  # seconds between reconciliations without a registration notice

Capacity = Callable[[str], Awaitable[int]]


class LaneSource(Protocol):
    """What of a ``JobSource`` the lanes need."""

    async def follow(self, lanes: Mapping[str, int]) -> None: ...

    async def lane_consumers(self, model: str) -> int | None: ...


class Catalog(Protocol):
    """The served models (``discovery.catalog.ModelCatalog``)."""

    async def models(self) -> list[str]: ...

    async def refresh(self) -> None: ...


def share(slots: int, consumers: int | None, *, following: bool, ceiling: int) -> int:
    """This dispatcher's prefetch on a lane whose model has ``slots`` worker slots, when
    ``consumers`` dispatchers (counting this one if ``following``) consume the lane."""
    others = max((consumers or 0) - (1 if following else 0), 0)
    return max(1, min(ceiling, math.ceil(slots / (others + 1))))


class LaneManager:
    def __init__(self, source: LaneSource, catalog: Catalog, capacity: Capacity,
                 cache: Cache, settings: Settings, *,
                 interval: float = RECONCILE_EVERY) -> None:
        self._source = source
        self._catalog = catalog
        self._capacity = capacity
        self._cache = cache
        self._settings = settings
        self._interval = interval
        self._followed: dict[str, int] = {}
        self._wake = asyncio.Event()

    @property
    def followed(self) -> dict[str, int]:
        """The lanes followed now, with their prefetch."""
        return dict(self._followed)

    async def reconcile(self) -> None:
        try:
            models = await self._catalog.models()
        except MqgateError as exc:  # the controller is down and nothing is cached: keep on
            log.warning("lanes not reconciled: %s", exc.message)
            return
        wanted: dict[str, int] = {}
        for model in models:
            try:
                slots = await self._capacity(model)
            except MqgateError:
                slots = 0
            if slots <= 0:
                if model in self._followed:  # keep what was followed while it cannot be known
                    wanted[model] = self._followed[model]
                continue
            consumers = await self._source.lane_consumers(model)
            wanted[model] = share(slots, consumers, following=model in self._followed,
                                  ceiling=self._settings.concurrency)
        if wanted != self._followed:
            await self._source.follow(wanted)
            for model in self._followed.keys() - wanted.keys():
                log.info("no longer following the lane of %s", model)
            self._followed = wanted

    async def _on_registered(self, _notice: str) -> None:
        await self._catalog.refresh()
        self._wake.set()

    async def _on_attached(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Reconcile until cancelled: every ``interval``, or at once after a notice."""
        self._cache.subscribe(self._settings.topology.registrations_channel,
                              self._on_registered, self._on_attached)
        while True:
            self._wake.clear()
            await self.reconcile()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()


PROGRESS_TTL = 86400.0  # a lane's taken count lives this long after its last job


class LaneProgress:
    """How many jobs dispatchers have taken from each lane, counted in the shared cache: with
    a lane's depth, what a waiting request needs to estimate its place in the queue."""

    def __init__(self, cache: Cache, settings: Settings) -> None:
        self._cache = cache
        self._topology = settings.topology
        self._pending: set[asyncio.Task[int | None]] = set()

    def took(self, model: str) -> None:
        """Count one job taken from ``model``'s lane, without waiting for the cache."""
        task = asyncio.create_task(self._cache.incr(self._topology.taken_key(model),
                                                    PROGRESS_TTL))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def taken(self, model: str) -> int:
        """Jobs taken from ``model``'s lane so far (0 when the cache has no count)."""
        value = await self._cache.get(self._topology.taken_key(model))
        return int(value) if value is not None and value.isdigit() else 0


class QueuePosition:
    """An estimate of a waiting job's place in its lane: at first the lane's depth (it may be
    last), then that less the jobs taken since, never more than the depth now. Jobs of a
    higher tier that arrive later overtake it, so the estimate may fall more slowly than the
    place itself. None once the lane is empty (the job was taken) or nothing can be said."""

    def __init__(self, depth: Callable[[], Awaitable[int | None]],
                 taken: Callable[[], Awaitable[int]]) -> None:
        self._depth = depth
        self._taken = taken
        self._start: tuple[int, int] | None = None

    async def estimate(self) -> int | None:
        depth = await self._depth()
        if not depth:
            return None
        taken = await self._taken()
        if self._start is None:
            self._start = (depth, taken)
            return depth
        first_depth, first_taken = self._start
        return max(1, min(depth, first_depth - (taken - first_taken)))
