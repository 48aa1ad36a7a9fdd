"""How a cancel travels: the fan-out to running jobs, and a mark for queued ones.

The api publishes a cancel on the fan-out exchange, which reaches the dispatcher running the
job, and leaves a mark in the shared cache for as long as the job could still be taken from
the queue. A dispatcher asks the cache only about jobs that may have been cancelled while it
was not listening: those submitted before it last began to hear every cancel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from contracts.jobs import Job
from contracts.topology import Topology
from discovery.cache import Cache

log = logging.getLogger(__name__)

# how far the api's and the dispatcher's clocks may disagree about when a job was submitted
CLOCK_SKEW = 1.0


class CancelHeard(Protocol):
    """A job source that tells since when it has heard every cancel (see ``JobSource``)."""

    cancels_heard_since: float


class CancelPublisher:
    """The api's side. Cancels go out in the background, so that a request's teardown never
    waits on the broker; ``aclose`` waits for those still under way."""

    def __init__(self, publish: Callable[[str], Coroutine[Any, Any, None]], cache: Cache,
                 topology: Topology) -> None:
        self._publish = publish
        self._cache = cache
        self._topology = topology
        self._pending: set[asyncio.Task[None]] = set()

    def cancel(self, job: Job) -> None:
        for work in (self._publish(job.id),
                     self._cache.set(self._topology.cancel_key(job.id), "1",
                                     max(job.remaining(), 1.0))):
            task = asyncio.create_task(work)
            self._pending.add(task)
            task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("a cancel could not be sent: %s", type(exc).__name__)

    async def aclose(self) -> None:
        """Wait for the cancels still under way (each publish is bounded by its own
        timeout, each cache write by Redis's)."""
        if self._pending:
            await asyncio.wait(list(self._pending))


def may_be_unheard(job: Job, heard_since: float) -> bool:
    """Whether a cancel of ``job`` may have been published while the source did not listen:
    only for jobs submitted before it last began to hear every cancel."""
    return job.submitted <= heard_since + CLOCK_SKEW


class CancelMarks:
    """The dispatcher's side: was a job cancelled while this source could not hear it?"""

    def __init__(self, source: CancelHeard, cache: Cache, topology: Topology) -> None:
        self._source = source
        self._cache = cache
        self._topology = topology

    async def cancelled_unheard(self, job: Job) -> bool:
        if not may_be_unheard(job, self._source.cancels_heard_since):
            return False
        return await self._cache.get(self._topology.cancel_key(job.id)) is not None
