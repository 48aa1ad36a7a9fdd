"""The two faces of a transport: what the api needs and what a dispatcher needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from consumers.reply_router import ReplyRouter
from contracts.jobs import Job, Reply


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One delivery of a job to a dispatcher, with the means to answer and settle it."""

    job: Job
    attempt: str
    redelivered: bool
    delivery_count: int
    reply: Callable[[Reply], Awaitable[None]]
    ack: Callable[[], Awaitable[None]]
    requeue: Callable[[], Awaitable[None]]


DeliveryHandler = Callable[[Delivery], Awaitable[None]]
CancelHandler = Callable[[str], None]


class JobQueue(Protocol):
    """The api's side: publish jobs and cancels; replies arrive through ``router``."""

    router: ReplyRouter

    async def publish_job(self, job: Job) -> None:
        """Raises CapacityError when the queue is full, BrokerUnavailableError when down."""
        ...

    async def publish_cancel(self, job_id: str) -> None: ...

    async def depth(self) -> int | None:
        """Jobs waiting in the queue, or None when that cannot be known now."""
        ...

    async def consumers(self) -> int | None:
        """Dispatchers consuming the jobs queue now, or None when that cannot be known now.
        Never raises."""
        ...

    async def ping(self) -> bool: ...


class JobSource(Protocol):
    """A dispatcher's side: jobs and cancels in, replies out.

    ``cancels_heard_since`` is the wall-clock time since which every cancel published has
    reached this source (infinity while it is not listening): a job submitted later than that
    cannot have been cancelled unheard.
    """

    cancels_heard_since: float

    async def consume(self, on_job: DeliveryHandler, on_cancel: CancelHandler,
                      prefetch: int) -> None:
        """Start consuming; returns once consumers are attached."""
        ...

    async def stop_consuming(self) -> None: ...

    async def ping(self) -> bool: ...
