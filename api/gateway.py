"""Submitting jobs and reading their replies, with the guarantees a client relies on.

Replies are taken from one attempt only: the first attempt that answers. A later attempt (a
redelivery after a dispatcher died) is followed only if the first sent no output; otherwise
the stream ends with an error, so a client never sees two generations mixed. Sequence numbers
must be contiguous. Every wait is bounded by the job's deadline, and streams by an idle limit;
a job that no dispatcher takes is given up after ``MQGATE_NO_DISPATCHER_TIMEOUT`` (see
``api.dispatchers``), and cancelled like any job whose client is gone, so it never runs later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial

from api.dispatchers import DispatcherWatch, Publication
from api.metrics import CANCELLATIONS
from consumers.cancel import CancelPublisher
from consumers.lanes import LaneProgress, QueuePosition
from consumers.reply_router import ReplyOverflowError, Subscription
from consumers.transport import JobQueue
from contracts.errors import (
    CapacityError,
    ControllerUnavailableError,
    DeadlineExceededError,
    ModelNotFoundError,
    MqgateError,
    WorkerStreamError,
    error_from_detail,
)
from contracts.jobs import Job, Reply, ReplyKind
from contracts.settings import Settings
from discovery.cache import Cache
from discovery.catalog import ModelCatalog
from runtime.logs import job_id_var

log = logging.getLogger(__name__)

KEEPALIVE = None  # what ``ReplyReader.next`` returns when a keepalive interval passes


class CancelReason(StrEnum):
    CLIENT_GONE = "client_gone"  # the client disconnected
    GIVEN_UP = "given_up"  # the api stopped waiting: deadline, idle stream, no dispatcher


@dataclass
class ReplyReader:
    """Reads one job's replies off its subscription, enforcing attempt lock and ordering.

    Closing it (``close``, or leaving its ``with`` block) ends the subscription and, when the
    job has not ended (no final or error reply came), cancels it, since a dispatcher may still
    be running it or may take it from the queue later."""

    job: Job
    subscription: Subscription
    settings: Settings
    abandon: Callable[[Job, CancelReason], None]
    publication: Publication | None = None  # watched for want of a dispatcher until output
    ended: bool = False
    _closed: bool = False
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
        self.ended = reply.kind in (ReplyKind.FINAL, ReplyKind.ERROR)
        return reply.kind is not ReplyKind.STARTED

    def _limit(self) -> tuple[float, bool]:
        """Seconds this wait may last at most, and whether the idle limit of a stream that
        has output sets them (else the deadline does)."""
        remaining = self.job.remaining()
        if remaining <= 0:
            raise DeadlineExceededError("the request's deadline passed")
        idle_left = self.settings.stream_idle_timeout - (time.monotonic() - self._last_reply)
        if self._output_seen and idle_left < remaining:
            return idle_left, True
        return remaining, False

    def _watched(self) -> Publication | None:
        """The publication to watch for want of a dispatcher: until output arrives."""
        return None if self._output_seen else self.publication

    def _wait(self, limit: float, keepalive_at: float | None) -> float:
        wait = limit if keepalive_at is None else min(limit, keepalive_at - time.monotonic())
        watched = self._watched()
        return wait if watched is None else min(wait, watched.recheck)

    def _timed_out(self, wait: float, limit: float, idle_limited: bool,
                   keepalive_at: float | None) -> bool:
        """After ``wait`` seconds with no reply: raise when the limit is reached or no
        dispatcher will take the job; True when a keepalive is due."""
        if wait >= limit:
            if idle_limited:
                raise WorkerStreamError(
                    f"the worker sent nothing for {self.settings.stream_idle_timeout:.0f}s")
            raise DeadlineExceededError("the request's deadline passed")
        watched = self._watched()
        if watched is not None:
            watched.check()
        return keepalive_at is not None and time.monotonic() >= keepalive_at

    async def next(self, *, keepalive: float | None = None) -> Reply | None:
        """The next reply, or None when ``keepalive`` seconds pass without one."""
        keepalive_at = None if keepalive is None else time.monotonic() + keepalive
        while True:
            limit, idle_limited = self._limit()
            wait = self._wait(limit, keepalive_at)
            try:
                reply = await self.subscription.get(wait)
            except TimeoutError:
                if self._timed_out(wait, limit, idle_limited, keepalive_at):
                    return KEEPALIVE
                continue
            except ReplyOverflowError:
                raise WorkerStreamError("the client read too slowly; the request was "
                                        "cancelled") from None
            if not self._accept(reply):
                continue
            self._last_reply = time.monotonic()
            if reply.kind is ReplyKind.ERROR and reply.error is not None:
                raise error_from_detail(reply.error, reply.status)
            if reply.choices or reply.chunks:
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

    @property
    def output_seen(self) -> bool:
        return self._output_seen

    async def first_within(self, seconds: float) -> Reply | None:
        """The first reply, or None when ``seconds`` pass without one (the job waits)."""
        return await self.next(keepalive=seconds)

    def close(self, *, client_gone: bool = False) -> None:
        """Stop reading; cancel the job unless it ended. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.subscription.close()
        if not self.ended:
            self.abandon(self.job, CancelReason.CLIENT_GONE if client_gone
                         else CancelReason.GIVEN_UP)

    def __enter__(self) -> ReplyReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Gateway:
    def __init__(self, settings: Settings, queue: JobQueue, catalog: ModelCatalog,
                 cache: Cache) -> None:
        self.settings = settings
        self.queue = queue
        self.catalog = catalog
        self.cache = cache
        self._watches: dict[str, DispatcherWatch] = {}
        self._cancels = CancelPublisher(queue.publish_cancel, cache, settings.topology)
        self._progress = LaneProgress(cache, settings)

    def dispatchers(self, model: str) -> DispatcherWatch:
        """What the api knows of the dispatchers that follow ``model``'s lane."""
        watch = self._watches.get(model)
        if watch is None:
            watch = self._watches[model] = DispatcherWatch(
                partial(self.queue.consumers, model), queue=self.settings.topology.lane(model),
                wait=self.settings.no_dispatcher_timeout, grace=self.settings.shutdown_grace)
        return watch

    async def dispatchers_listening(self) -> tuple[bool, str]:
        """Whether a dispatcher follows the lane of a model the controller lists (asked of
        the broker now), and, when none does, why."""
        try:
            models = await self.catalog.models()
        except MqgateError as exc:
            return False, f"the models, and so their lanes, are unknown: {exc.message}"
        if not models:
            return False, "the controller lists no model, so no dispatcher follows any lane"
        for model in models:
            if await self.dispatchers(model).listening():
                return True, ""
        return False, self.dispatchers(models[0]).why()

    def position(self, job: Job) -> QueuePosition:
        """An estimate of ``job``'s place in its lane, for a client that waits."""
        return QueuePosition(partial(self.queue.depth, job.model),
                             partial(self._progress.taken, job.model))

    async def aclose(self) -> None:
        """Let the cancels still under way go out."""
        await self._cancels.aclose()

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
        watch = self.dispatchers(job.model)
        publication = await watch.publishing()
        subscription = self.queue.router.subscribe(job.id)
        try:
            await self.queue.publish_job(job)
        except BaseException as exc:
            subscription.close()
            if isinstance(exc, CapacityError) and watch.absent:
                # say why the queue filled up
                raise CapacityError(f"the queue of model '{job.model}' is full, and "
                                    f"{watch.why()}") from exc
            raise
        return ReplyReader(job, subscription, self.settings, self.cancel, publication)

    def cancel(self, job: Job, reason: CancelReason) -> None:
        """Tell dispatchers to stop ``job`` (see ``consumers.cancel``)."""
        CANCELLATIONS.labels(reason=reason).inc()
        self._cancels.cancel(job)
