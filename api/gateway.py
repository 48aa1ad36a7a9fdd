"""Submitting jobs and reading their replies, with the guarantees a client relies on.

Replies are taken from one attempt only: the first attempt that answers. A later attempt (a
redelivery after a dispatcher died) is followed only if the first sent no output; otherwise
the stream ends with an error, so a client never sees two generations mixed. Sequence numbers
must be contiguous. Every wait is bounded by the job's deadline, and streams by an idle limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from api.metrics import CANCELLATIONS
from consumers.reply_router import ReplyOverflowError, Subscription
from consumers.transport import JobQueue
from contracts.errors import (
    ControllerUnavailableError,
    DeadlineExceededError,
    ModelNotFoundError,
    WorkerStreamError,
    error_from_detail,
)
from contracts.jobs import Job, Reply, ReplyKind
from contracts.logs import job_id_var
from contracts.settings import Settings
from dispatcher.cache import Cache
from dispatcher.resolver import ModelCatalog

log = logging.getLogger(__name__)

KEEPALIVE = None  # what ``ReplyReader.next`` returns when a keepalive interval passes


@dataclass
class ReplyReader:
    """Reads one job's replies off its subscription, enforcing attempt lock and ordering."""

    job: Job
    subscription: Subscription
    settings: Settings
    _attempt: str | None = None
    _abandoned: set[str] = field(default_factory=set)
    _seq: int = 0
    _output_seen: bool = False
    _last_reply: float = field(default_factory=time.monotonic)

    def _accept(self, reply: Reply) -> bool:
        if reply.attempt in self._abandoned:
            return False
        if self._attempt is None:
            self._attempt = reply.attempt
        elif reply.attempt != self._attempt:
            if self._output_seen:
                raise WorkerStreamError("the dispatcher serving this stream failed; the output "
                                        "was interrupted")
            self._abandoned.add(self._attempt)
            self._attempt, self._seq = reply.attempt, 0
        if reply.seq != self._seq:
            raise WorkerStreamError("replies for this request were lost in transit")
        self._seq += 1
        return reply.kind is not ReplyKind.STARTED

    async def next(self, *, keepalive: float | None = None) -> Reply | None:
        """The next reply, or None when ``keepalive`` seconds pass without one."""
        while True:
            remaining = self.job.remaining()
            if remaining <= 0:
                raise DeadlineExceededError("the request's deadline passed")
            idle_left = self.settings.stream_idle_timeout - (time.monotonic() - self._last_reply)
            idle_limited = self._output_seen and idle_left < remaining
            limit = idle_left if idle_limited else remaining
            wait = limit if keepalive is None else min(limit, keepalive)
            try:
                reply = await self.subscription.get(wait)
            except TimeoutError:
                if wait < limit:
                    return KEEPALIVE
                if not idle_limited:
                    raise DeadlineExceededError("the request's deadline passed") from None
                raise WorkerStreamError("the worker sent nothing for "
                                        f"{self.settings.stream_idle_timeout:.0f}s") from None
            except ReplyOverflowError:
                raise WorkerStreamError("the client read too slowly; the request was "
                                        "cancelled") from None
            if not self._accept(reply):
                continue
            self._last_reply = time.monotonic()
            if reply.kind is ReplyKind.ERROR and reply.error is not None:
                raise error_from_detail(reply.error)
            if reply.choices:
                self._output_seen = True
            return reply

    async def first(self) -> Reply:
        """The first reply with output (or the final one), before a response starts."""
        reply = await self.next()
        assert reply is not None  # no keepalive was asked for
        return reply

    async def final(self) -> list[Reply]:
        """Every reply up to the final one (non-stream requests)."""
        replies: list[Reply] = []
        while True:
            reply = await self.next()
            assert reply is not None
            replies.append(reply)
            if reply.kind is ReplyKind.FINAL:
                return replies


class Gateway:
    def __init__(self, settings: Settings, queue: JobQueue, catalog: ModelCatalog,
                 cache: Cache) -> None:
        self.settings = settings
        self.queue = queue
        self.catalog = catalog
        self.cache = cache
        self._background: set[asyncio.Task[None]] = set()

    async def check_model(self, model: str) -> None:
        if model not in await self.catalog.models():
            if self.catalog.stale:
                raise ControllerUnavailableError(
                    f"the controller is unreachable, and model '{model}' is not among the "
                    "models known before it went away")
            raise ModelNotFoundError(
                f"The model '{model}' does not exist or is not served by any worker.",
                param="model")

    async def submit(self, job: Job) -> ReplyReader:
        """Subscribe, then publish: no reply can arrive before its reader exists."""
        job_id_var.set(job.id)
        subscription = self.queue.router.subscribe(job.id)
        try:
            await self.queue.publish_job(job)
        except BaseException:
            subscription.close()
            raise
        return ReplyReader(job, subscription, self.settings)

    def cancel(self, job: Job) -> None:
        """Tell dispatchers to stop ``job``; runs in the background so it survives teardown.

        The fan-out reaches the dispatcher running the job; the mark in the shared cache
        reaches one that takes the job from the queue later."""
        CANCELLATIONS.inc()
        for work in (self.queue.publish_cancel(job.id),
                     self.cache.set(self.settings.topology.redis_key("cancelled", job.id), "1",
                                    max(job.remaining(), 1.0))):
            task = asyncio.create_task(work)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

