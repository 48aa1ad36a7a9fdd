"""The in-process transport: a bounded lane per model in memory, for ``mqgate serve`` and tests.

It keeps the semantics a client can observe over RabbitMQ: each model's lane refuses at once
when full (429), takes ``priority`` jobs before ``default`` ones and ``flex`` ones last (first
in, first out within a tier), never delivers an expired job, delivers a lane's jobs only while
it is followed and up to its prefetch, sends cancels to every consumer, routes replies by job
id, and delivers again a job that is not acknowledged when its consumer stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from consumers.reply_router import ReplyRouter
from consumers.transport import CancelHandler, Delivery, DeliveryHandler
from contracts.errors import CapacityError, DeadlineExceededError
from contracts.jobs import Job, Reply, ReplyKind
from contracts.settings import Settings

log = logging.getLogger(__name__)


@dataclass(order=True, slots=True)
class _Queued:
    order: tuple[int, int]  # (-tier rank, arrival): the heap's order
    job: Job = field(compare=False)
    deliveries: int = field(default=0, compare=False)


@dataclass(slots=True)
class _Lane:
    waiting: list[_Queued] = field(default_factory=list)  # a heap
    prefetch: int = 0  # 0: not followed
    unacked: int = 0


class InProcessTransport:
    """Both faces at once: the api's JobQueue and a dispatcher's JobSource."""

    def __init__(self, settings: Settings, router: ReplyRouter | None = None) -> None:
        self.router = router or ReplyRouter(settings.reply_buffer)
        self._max_length = settings.queue_max_length
        self._lanes: dict[str, _Lane] = {}
        self._available = asyncio.Condition()
        self._cancel_handlers: list[CancelHandler] = []
        self._unacked: dict[int, tuple[str, _Queued]] = {}
        self._tags = itertools.count(1)
        self._arrivals = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self.cancels_heard_since = math.inf

    async def __aenter__(self) -> InProcessTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_consuming()

    def _lane(self, model: str) -> _Lane:
        return self._lanes.setdefault(model, _Lane())

    # --- api side ---------------------------------------------------------------------------

    async def publish_job(self, job: Job) -> None:
        lane = self._lane(job.model)
        if len(lane.waiting) >= self._max_length:
            raise CapacityError(f"the queue of model '{job.model}' is full; retry later")
        async with self._available:
            heapq.heappush(lane.waiting, _Queued((-job.tier.rank, next(self._arrivals)), job))
            self._available.notify()

    async def publish_cancel(self, job_id: str) -> None:
        for handler in self._cancel_handlers:
            handler(job_id)

    async def ping(self) -> bool:
        return True

    def lanes(self) -> list[str]:
        return sorted(self._lanes)

    async def depth(self, model: str) -> int | None:
        return len(self._lane(model).waiting)

    async def consumers(self, model: str) -> int | None:
        return 1 if self._pump is not None and self._lane(model).prefetch else 0

    # --- dispatcher side --------------------------------------------------------------------

    async def consume(self, on_job: DeliveryHandler, on_cancel: CancelHandler) -> None:
        self._cancel_handlers.append(on_cancel)
        self.cancels_heard_since = time.time()
        self._pump = asyncio.create_task(self._deliver_loop(on_job))

    async def follow(self, lanes: Mapping[str, int]) -> None:
        async with self._available:
            for model, lane in self._lanes.items():
                lane.prefetch = lanes.get(model, 0)
            for model, prefetch in lanes.items():
                self._lane(model).prefetch = prefetch
            self._available.notify()

    async def lane_consumers(self, model: str) -> int | None:
        return await self.consumers(model)

    async def stop_consuming(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        self._cancel_handlers.clear()
        for tag in list(self._unacked):  # what nobody acknowledged goes back to its lane
            self._requeue(tag)

    def _expired(self, job: Job) -> None:
        """A job that expired at the head of its lane is answered at once, as RabbitMQ's
        dead-letter path answers it, and forgotten."""
        error = DeadlineExceededError("the request's deadline passed while it was queued")
        self.router.deliver(Reply(job_id=job.id, attempt="dead:expired", seq=0,
                                  kind=ReplyKind.ERROR, error=error.detail()))

    def _requeue(self, tag: int) -> None:
        found = self._unacked.pop(tag, None)
        if found is not None:
            model, item = found
            lane = self._lane(model)
            lane.unacked -= 1
            heapq.heappush(lane.waiting, item)  # back in its place: its order is kept

    def _ready(self) -> tuple[str, _Queued] | None:
        """The next job to deliver: lanes in turn, so that none waits behind another."""
        for model in sorted(self._lanes, key=lambda m: self._lanes[m].unacked):
            lane = self._lanes[model]
            while lane.waiting and lane.waiting[0].job.remaining() <= 0:
                self._expired(heapq.heappop(lane.waiting).job)
            if lane.waiting and lane.unacked < lane.prefetch:
                lane.unacked += 1
                return model, heapq.heappop(lane.waiting)
        return None

    async def _next(self) -> tuple[str, _Queued]:
        async with self._available:
            while (ready := self._ready()) is None:
                await self._available.wait()
            return ready

    async def _deliver_loop(self, on_job: DeliveryHandler) -> None:
        while True:
            model, item = await self._next()
            tag = next(self._tags)
            self._unacked[tag] = (model, item)
            item.deliveries += 1
            await on_job(self._delivery(item, tag))

    def _settle(self, tag: int) -> None:
        found = self._unacked.pop(tag, None)
        if found is not None:
            self._lane(found[0]).unacked -= 1

    def _delivery(self, item: _Queued, tag: int) -> Delivery:
        async def reply(r: Reply) -> None:
            self.router.deliver(r)

        async def ack() -> None:
            async with self._available:
                self._settle(tag)
                self._available.notify()

        async def requeue() -> None:
            async with self._available:
                self._requeue(tag)
                self._available.notify()

        return Delivery(job=item.job, attempt=f"inproc:{tag}", redelivered=item.deliveries > 1,
                        delivery_count=item.deliveries - 1, reply=reply, ack=ack,
                        requeue=requeue)
