"""The in-process transport: one bounded queue in memory, for ``mqgate serve`` and tests.

It keeps the semantics a client can observe over RabbitMQ: a full queue refuses at once
(429), expired jobs are never delivered, cancels reach every consumer, replies travel by job id,
and a job that is not acknowledged when its consumer stops is delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import deque
from dataclasses import dataclass

from consumers.reply_router import ReplyRouter
from consumers.transport import CancelHandler, Delivery, DeliveryHandler
from contracts.errors import CapacityError, DeadlineExceededError
from contracts.jobs import Job, Reply, ReplyKind
from contracts.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Queued:
    job: Job
    deliveries: int = 0


class InProcessTransport:
    """Both faces at once: the api's JobQueue and a dispatcher's JobSource."""

    def __init__(self, settings: Settings, router: ReplyRouter | None = None) -> None:
        self.router = router or ReplyRouter(settings.reply_buffer)
        self._max_length = settings.queue_max_length
        self._queue: deque[_Queued] = deque()
        self._available = asyncio.Condition()
        self._cancel_handlers: list[CancelHandler] = []
        self._unacked: dict[int, _Queued] = {}
        self._tags = itertools.count(1)
        self._pump: asyncio.Task[None] | None = None
        self.cancels_heard_since = math.inf

    async def __aenter__(self) -> InProcessTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_consuming()

    # --- api side ---------------------------------------------------------------------------

    async def publish_job(self, job: Job) -> None:
        if len(self._queue) >= self._max_length:
            raise CapacityError("the job queue is full; retry later")
        async with self._available:
            self._queue.append(_Queued(job))
            self._available.notify()

    async def publish_cancel(self, job_id: str) -> None:
        for handler in self._cancel_handlers:
            handler(job_id)

    async def ping(self) -> bool:
        return True

    async def depth(self) -> int | None:
        return len(self._queue)

    async def consumers(self) -> int | None:
        return len(self._cancel_handlers)  # one per consume(), until stop_consuming()

    # --- dispatcher side --------------------------------------------------------------------

    async def consume(self, on_job: DeliveryHandler, on_cancel: CancelHandler,
                      prefetch: int) -> None:
        self._cancel_handlers.append(on_cancel)
        self.cancels_heard_since = time.time()
        self._pump = asyncio.create_task(self._deliver_loop(on_job, prefetch))

    async def stop_consuming(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        self._cancel_handlers.clear()
        for tag in list(self._unacked):  # what nobody acknowledged goes back to the queue
            self._requeue(tag)

    def _expired(self, job: Job) -> None:
        """A job that expired at the head of the queue is answered at once, as RabbitMQ's
        dead-letter path answers it, and forgotten."""
        error = DeadlineExceededError("the request's deadline passed while it was queued")
        self.router.deliver(Reply(job_id=job.id, attempt="dead:expired", seq=0,
                                  kind=ReplyKind.ERROR, error=error.detail()))

    def _requeue(self, tag: int) -> None:
        item = self._unacked.pop(tag, None)
        if item is not None:
            self._queue.appendleft(item)

    async def _next(self, prefetch: int) -> _Queued:
        async with self._available:
            while True:
                while self._queue and self._queue[0].job.remaining() <= 0:
                    self._expired(self._queue.popleft().job)
                if self._queue and len(self._unacked) < prefetch:
                    return self._queue.popleft()
                await self._available.wait()

    async def _deliver_loop(self, on_job: DeliveryHandler, prefetch: int) -> None:
        while True:
            item = await self._next(prefetch)
            tag = next(self._tags)
            self._unacked[tag] = item
            item.deliveries += 1
            await on_job(self._delivery(item, tag))

    def _delivery(self, item: _Queued, tag: int) -> Delivery:
        async def reply(r: Reply) -> None:
            self.router.deliver(r)

        async def ack() -> None:
            async with self._available:
                self._unacked.pop(tag, None)
                self._available.notify()

        async def requeue() -> None:
            async with self._available:
                self._requeue(tag)
                self._available.notify()

        return Delivery(job=item.job, attempt=f"inproc:{tag}", redelivered=item.deliveries > 1,
                        delivery_count=item.deliveries - 1, reply=reply, ack=ack,
                        requeue=requeue)
