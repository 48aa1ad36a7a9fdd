"""Runs each delivered job through the dispatch service and settles it.

A job is acknowledged only after its last reply is published, so a dispatcher that dies
mid-job leaves it to be redelivered. A cancel stops the job's task, which closes the worker
stream; a shutdown requeues what has not finished within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from consumers.transport import Delivery
from contracts.errors import DeadlineExceededError, MqgateError
from contracts.jobs import Job
from dispatcher.metrics import CANCELLATIONS, EXPIRED, IN_FLIGHT, JOBS, QUEUED_SECONDS
from dispatcher.replies import ReplySink
from runtime.logs import job_id_var

log = logging.getLogger(__name__)


class JobService(Protocol):
    """What runs one job (``dispatcher.service.DispatchService``)."""

    async def run(self, job: Job, sink: ReplySink) -> None: ...


class JobRunner:
    def __init__(self, service: JobService, *, remember_cancels: float = 900.0,
                 flush_interval: float = 0.0,
                 cancelled_elsewhere: Callable[[Job], Awaitable[bool]] | None = None,
                 took: Callable[[str], None] | None = None) -> None:
        self._service = service
        self._took = took
        self._cancelled_elsewhere = cancelled_elsewhere
        self._flush_interval = flush_interval
        self._remember = remember_cancels
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancelled: dict[str, float] = {}

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def handle(self, delivery: Delivery) -> None:
        """Start the job and return at once; the consumer's prefetch bounds concurrency."""
        job_id = delivery.job.id
        previous = self._running.get(job_id)
        if previous is not None:  # a redelivery while this process still runs it
            previous.cancel()
        task = asyncio.create_task(self._run(delivery), name=f"job-{job_id}")
        self._running[job_id] = task
        task.add_done_callback(lambda t: self._forget(job_id, t))

    def _forget(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._running.get(job_id) is task:
            del self._running[job_id]

    def cancel(self, job_id: str) -> None:
        now = time.monotonic()
        self._cancelled[job_id] = now + self._remember
        if len(self._cancelled) > 10_000:
            self._cancelled = {k: v for k, v in self._cancelled.items() if v > now}
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()

    def _is_cancelled(self, job_id: str) -> bool:
        until = self._cancelled.get(job_id)
        return until is not None and until > time.monotonic()

    async def _run(self, delivery: Delivery) -> None:
        job = delivery.job
        job_id_var.set(job.id)  # this task's log lines carry the job id
        sink = ReplySink(job_id=job.id, attempt=delivery.attempt, stream=job.stream,
                         send=delivery.reply, interval=self._flush_interval)
        if await self._turned_away(delivery, sink):
            await delivery.ack()
            return
        QUEUED_SECONDS.labels(model=job.model, tier=job.tier).observe(
            max(time.time() - job.submitted, 0.0))
        if self._took is not None:
            self._took(job.model)
        IN_FLIGHT.inc()
        try:
            outcome = await self._outcome(delivery, sink)
        except asyncio.CancelledError:
            await sink.aclose()
            if not self._is_cancelled(job.id):
                await delivery.requeue()  # stopping: another dispatcher takes it
                raise
            CANCELLATIONS.inc()
            outcome = "cancelled"
        finally:
            IN_FLIGHT.dec()
        JOBS.labels(kind=job.kind, model=job.model, outcome=outcome).inc()
        log.log(logging.INFO if outcome in ("ok", "cancelled") else logging.WARNING,
                "%s job for %s ended: %s", job.kind, job.model, outcome)
        await sink.aclose()
        await delivery.ack()

    async def _turned_away(self, delivery: Delivery, sink: ReplySink) -> bool:
        """Whether the job is not to run: cancelled (nothing to say), or past its deadline
        (its client is told)."""
        job = delivery.job
        if self._is_cancelled(job.id) or (self._cancelled_elsewhere is not None
                                           and await self._cancelled_elsewhere(job)):
            return True
        if job.remaining() <= 0:
            EXPIRED.inc()
            await self._report(sink, DeadlineExceededError("the request's deadline passed "
                                                           "while it was queued"))
            return True
        return False

    async def _outcome(self, delivery: Delivery, sink: ReplySink) -> str:
        """Run the job; its outcome for the metrics ("ok", or the error's code), with any
        error reported to its client."""
        job = delivery.job
        try:
            if delivery.redelivered and job.stream:
                await sink.started()
            await self._service.run(job, sink)
        except MqgateError as exc:
            await self._report(sink, exc)
            return exc.code
        except Exception:
            log.exception("job failed")
            await self._report(sink, MqgateError("the dispatcher failed on this request"))
            return "internal_error"
        return "ok"

    @staticmethod
    async def _report(sink: ReplySink, error: MqgateError) -> None:
        try:
            await sink.fail(error)
        except Exception as exc:  # noqa: BLE001 - the api is gone or the broker is down
            log.warning("could not report an error reply: %s", type(exc).__name__)

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for running jobs, then cancel (requeue) the rest."""
        tasks = list(self._running.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
