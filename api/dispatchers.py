"""Whether any dispatcher consumes the jobs queue, as the broker last said, remembered briefly.

While dispatchers are seen a request costs no broker round trip: the answer is refreshed in the
background once it is older than ``FRESH`` seconds. When none is seen, the answer is refreshed
every few tenths of a second while requests wait, so that a dispatcher that comes back (a
rolling restart) is noticed at once.

A job that no dispatcher can take is given up after a bounded wait:

* published while none consumed: ``MQGATE_NO_DISPATCHER_TIMEOUT`` after it was published,
  unless a dispatcher was seen meanwhile;
* otherwise: that long after the grace a stopping dispatcher has to finish its jobs
  (``MQGATE_SHUTDOWN_GRACE``), counted from when the last dispatcher went, since the job may be
  one that a stopping dispatcher is finishing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contracts.errors import NoDispatcherError

log = logging.getLogger(__name__)

FRESH = 1.0  # seconds an answer that dispatchers are there is trusted without asking again
POLL = 0.25  # seconds between questions while none is there and someone waits
LONGEST_RECHECK = 5.0  # at most this long between looks by a request waiting for its answer

Count = Callable[[], Awaitable[int | None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Publication:
    """One job's publication: when (monotonic clock), and whether a dispatcher was known then."""

    watch: DispatcherWatch
    at: float
    unattended: bool

    @property
    def recheck(self) -> float:
        """How long the request may wait for a reply before calling ``check`` again."""
        return self.watch.recheck

    def check(self) -> None:
        """Raise NoDispatcherError once the job has waited long enough with no dispatcher
        to take it."""
        self.watch.check(self)


class DispatcherWatch:
    """The api's knowledge of whether dispatchers consume the jobs queue (one per api)."""

    def __init__(self, count: Count, *, queue: str, wait: float, grace: float,
                 fresh: float = FRESH, clock: Callable[[], float] = time.monotonic) -> None:
        self._count = count
        self._fresh = fresh
        self._clock = clock
        self._queue = queue
        self._wait = wait
        self._grace = grace
        self._known = False
        self._checked = -math.inf
        self._absent_since: float | None = None
        self._last_seen = -math.inf  # when dispatchers were last seen
        self._last_count: int | None = None
        self._asking: asyncio.Task[None] | None = None
        self._present_recheck = max(0.05, min(LONGEST_RECHECK, (grace + wait) / 4))
        self._absent_recheck = max(0.05, min(POLL, wait / 4))

    @property
    def absent(self) -> bool:
        """True while the broker last said that nothing consumes the jobs queue."""
        return self._absent_since is not None

    @property
    def recheck(self) -> float:
        """How long a request waiting for its answer may go without looking here."""
        return self._absent_recheck if self.absent else self._present_recheck

    def why(self) -> str:
        """What is wrong, for a person, when no dispatcher is known to listen."""
        if self._known and self._last_count is None:
            return (f"the message broker cannot say whether a dispatcher consumes the job "
                    f"queue {self._queue!r}")
        return (f"no dispatcher consumes the job queue {self._queue!r}: are dispatchers "
                "running, with the same MQGATE_NAMESPACE and MQGATE_AMQP_URL as the api?")

    async def listening(self) -> bool:
        """Whether a dispatcher consumes the jobs queue, asked of the broker now (sharing a
        question already under way)."""
        await self._ask()
        return self._last_count is not None and self._last_count > 0

    async def publishing(self) -> Publication:
        """Note a job about to be published. Only the first one ever waits for the broker."""
        if not self._known:
            await self._ask()
        else:
            self._refresh_if_stale()
        return Publication(watch=self, at=self._clock(), unattended=self.absent)

    def check(self, publication: Publication) -> None:
        """Raise NoDispatcherError once the job of ``publication`` has waited long enough with
        no dispatcher to take it; refreshes what is known, in the background."""
        self._refresh_if_stale()
        if self._absent_since is None:
            return
        now = self._clock()
        if publication.unattended and self._last_seen < publication.at:
            give_up_at = publication.at + self._wait
        else:
            give_up_at = max(self._absent_since, publication.at) + self._grace + self._wait
        if now >= give_up_at:
            raise NoDispatcherError(f"{self.why()} Waited {now - publication.at:.0f}s.")

    def _refresh_if_stale(self) -> None:
        limit = POLL if self.absent else self._fresh
        if self._asking is None and self._clock() - self._checked >= limit:
            self._start_asking()

    def _start_asking(self) -> asyncio.Task[None]:
        if self._asking is None:
            self._asking = asyncio.create_task(self._question())
            self._asking.add_done_callback(self._asked)
        return self._asking

    async def _ask(self) -> None:
        await asyncio.shield(self._start_asking())

    def _asked(self, task: asyncio.Task[None]) -> None:
        self._asking = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not ask the broker about dispatchers: %r", task.exception())

    async def _question(self) -> None:
        count = await self._count()
        now = self._clock()
        self._known, self._checked, self._last_count = True, now, count
        if count == 0:
            if self._absent_since is None:
                log.warning("%s", self.why())
                self._absent_since = now
            return
        if self._absent_since is not None:
            log.info("a dispatcher consumes %s again", self._queue)
        self._absent_since = None  # dispatchers, or the broker cannot say: not known absent
        if count is not None:
            self._last_seen = now
