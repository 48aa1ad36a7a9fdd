"""One behaviour suite, run on the in-process transport and on RabbitMQ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest

from consumers.inprocess import InProcessTransport
from consumers.rabbitmq import RabbitJobQueue
from consumers.rabbitmq_source import RabbitJobSource
from consumers.reply_router import ReplyRouter
from consumers.transport import Delivery, JobQueue, JobSource
from contracts.errors import CapacityError
from contracts.jobs import Job, JobKind, Reply, ReplyKind, Tier
from contracts.settings import Settings
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@dataclass
class Transport:
    queue: JobQueue
    source: Callable[[], AbstractAsyncContextManager[JobSource]]


@pytest.fixture(params=["inprocess", "rabbitmq"])
async def transport(request: pytest.FixtureRequest,
                    settings: Settings) -> AsyncIterator[Transport]:
    settings = settings.model_copy(update={"queue_max_length": 3})
    if request.param == "inprocess":
        shared = InProcessTransport(settings)

        @asynccontextmanager
        async def inprocess_source() -> AsyncIterator[JobSource]:
            try:
                yield shared
            finally:
                await shared.stop_consuming()

        yield Transport(shared, inprocess_source)
        return

    @asynccontextmanager
    async def rabbit_source() -> AsyncIterator[JobSource]:
        async with RabbitJobSource(settings) as source:
            yield source

    async with RabbitJobQueue(settings, ReplyRouter()) as queue:
        yield Transport(queue, rabbit_source)


def job(job_id: str, deadline: float = 30, *, model: str = "m",
        tier: Tier = Tier.DEFAULT) -> Job:
    return Job(id=job_id, kind=JobKind.CHAT, model=model, prompts=["p"], tier=tier,
               deadline=time.time() + deadline)


class Inbox:
    def __init__(self) -> None:
        self.deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self.cancels: list[str] = []

    async def on_job(self, delivery: Delivery) -> None:
        await self.deliveries.put(delivery)

    def on_cancel(self, job_id: str) -> None:
        self.cancels.append(job_id)

    async def next(self) -> Delivery:
        return await asyncio.wait_for(self.deliveries.get(), 10)


async def start(source: JobSource, inbox: Inbox, prefetch: int, *models: str) -> None:
    """Consume, following the lanes of ``models`` (default: "m") with ``prefetch``."""
    await source.consume(inbox.on_job, inbox.on_cancel)
    await source.follow(dict.fromkeys(models or ("m",), prefetch))


async def test_replies_go_to_their_own_request(transport: Transport) -> None:
    inbox = Inbox()
    async with transport.source() as source:
        await start(source, inbox, 8)
        subs = {i: transport.queue.router.subscribe(i) for i in ("a", "b")}
        for i in subs:
            await transport.queue.publish_job(job(i))
        for _ in subs:
            delivery = await inbox.next()
            await delivery.reply(Reply(job_id=delivery.job.id, attempt=delivery.attempt, seq=0,
                                       kind=ReplyKind.FINAL))
            await delivery.ack()
        for i, sub in subs.items():
            assert (await sub.get(5)).job_id == i
            sub.close()


async def test_full_queue_refuses_at_once(transport: Transport) -> None:
    for i in range(3):
        await transport.queue.publish_job(job(f"q{i}"))
    with pytest.raises(CapacityError):
        await transport.queue.publish_job(job("over"))


async def test_cancel_reaches_the_consumer(transport: Transport) -> None:
    inbox = Inbox()
    async with transport.source() as source:
        await start(source, inbox, 1)
        await transport.queue.publish_cancel("stop-me")
        await eventually(lambda: bool(inbox.cancels), timeout=10,
                         what="the cancel to reach the consumer")
    assert inbox.cancels == ["stop-me"]


async def test_unacknowledged_job_comes_back(transport: Transport) -> None:
    first, second = Inbox(), Inbox()
    await transport.queue.publish_job(job("again"))
    async with transport.source() as source:
        await start(source, first, 1)
        taken = await first.next()
        assert not taken.redelivered
    async with transport.source() as source:
        await start(source, second, 1)
        again = await second.next()
        assert again.job.id == "again"
        assert again.redelivered
        await again.ack()


async def test_expired_job_is_never_delivered(transport: Transport) -> None:
    inbox = Inbox()
    await transport.queue.publish_job(job("late", deadline=0.1))
    await asyncio.sleep(0.3)  # the job's deadline passes while it waits: the behaviour under test
    await transport.queue.publish_job(job("fresh"))
    async with transport.source() as source:
        await start(source, inbox, 4)
        delivered = await inbox.next()
        await delivered.ack()
        assert await transport.queue.depth("m") == 0  # nothing left that could still come
    assert delivered.job.id == "fresh"
    assert inbox.deliveries.empty()


async def test_prefetch_bounds_unacknowledged_deliveries(transport: Transport) -> None:
    inbox = Inbox()
    for i in range(3):
        await transport.queue.publish_job(job(f"p{i}"))
    async with transport.source() as source:
        await start(source, inbox, 2)
        held = [await inbox.next(), await inbox.next()]
        assert await transport.queue.depth("m") == 1  # the third is held back, still queued
        assert inbox.deliveries.empty()
        await held[0].ack()
        third = await inbox.next()
        assert third.job.id == "p2"
        for delivery in (held[1], third):
            await delivery.ack()


async def test_a_quiet_models_job_passes_a_busy_models_queue(transport: Transport) -> None:
    inbox = Inbox()
    for i in range(3):
        await transport.queue.publish_job(job(f"busy{i}", model="busy"))
    async with transport.source() as source:
        await start(source, inbox, 1, "busy", "quiet")
        held = await inbox.next()  # the busy model's one slot is taken
        assert held.job.model == "busy"
        await transport.queue.publish_job(job("quiet", model="quiet"))
        quiet = await inbox.next()
        assert quiet.job.id == "quiet"
        assert await transport.queue.depth("busy") == 2  # still queued behind their slot
        for delivery in (held, quiet):
            await delivery.ack()


async def test_tiers_decide_the_order_within_a_model(transport: Transport) -> None:
    inbox = Inbox()
    await transport.queue.publish_job(job("flex", tier=Tier.FLEX))
    await transport.queue.publish_job(job("default"))
    await transport.queue.publish_job(job("priority", tier=Tier.PRIORITY))
    order = []
    async with transport.source() as source:
        await start(source, inbox, 1)
        for _ in range(3):
            delivery = await inbox.next()
            order.append(delivery.job.id)
            await delivery.ack()
    assert order == ["priority", "default", "flex"]


async def test_a_full_lane_refuses_only_its_model(transport: Transport) -> None:
    for i in range(3):
        await transport.queue.publish_job(job(f"q{i}", model="flooded"))
    with pytest.raises(CapacityError):
        await transport.queue.publish_job(job("over", model="flooded"))
    await transport.queue.publish_job(job("other", model="calm"))
    assert await transport.queue.depth("calm") == 1


async def test_a_lane_no_longer_followed_has_no_consumer(transport: Transport) -> None:
    inbox = Inbox()
    async with transport.source() as source:
        await start(source, inbox, 1, "gone")
        assert await transport.queue.consumers("gone") == 1
        await source.follow({})
        assert await transport.queue.consumers("gone") == 0
        await transport.queue.publish_job(job("unseen", model="gone"))
        assert await transport.queue.depth("gone") == 1
    assert inbox.deliveries.empty()
