"""The two faces of a transport: what the api needs and what a dispatcher needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
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

    def lanes(self) -> list[str]:
        """The models whose lanes this api has published to."""
        ...

    async def depth(self, model: str) -> int | None:
        """Jobs waiting in ``model``'s lane, or None when that cannot be known now."""
        ...

    async def consumers(self, model: str) -> int | None:
        """Dispatchers consuming ``model``'s lane now, or None when that cannot be known now.
        Never raises."""
        ...

    async def ping(self) -> bool: ...


class JobSource(Protocol):
    """A dispatcher's side: jobs and cancels in, replies out. Jobs come from the lanes it
    follows, each with its own prefetch (the most jobs of that model it holds at once).

    ``cancels_heard_since`` is the wall-clock time since which every cancel published has
    reached this source (infinity while it is not listening): a job submitted later than that
    cannot have been cancelled unheard.
    """

    cancels_heard_since: float

    async def consume(self, on_job: DeliveryHandler, on_cancel: CancelHandler) -> None:
        """Start hearing cancels; jobs go to ``on_job`` from the lanes followed."""
        ...

    async def follow(self, lanes: Mapping[str, int]) -> None:
        """Consume exactly these models' lanes, each with its prefetch; returns once the
        consumers are attached (or detached)."""
        ...

    async def lane_consumers(self, model: str) -> int | None:
        """Dispatchers consuming ``model``'s lane now, or None when that cannot be known."""
        ...

    async def stop_consuming(self) -> None: ...

    async def ping(self) -> bool: ...
