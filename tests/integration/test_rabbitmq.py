"""The RabbitMQ transport against the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from consumers.rabbitmq import RabbitJobQueue
from consumers.rabbitmq_source import RabbitJobSource
from consumers.reply_router import ReplyRouter
from consumers.transport import Delivery
from contracts.errors import BrokerUnavailableError, CapacityError
from contracts.jobs import Job, JobKind, Reply, ReplyKind
from contracts.settings import Settings
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def job(job_id: str, deadline: float = 30) -> Job:
    return Job(id=job_id, kind=JobKind.CHAT, model="m", prompts=["p"],
               deadline=time.time() + deadline)


@contextlib.asynccontextmanager
async def connected(settings: Settings, prefetch: int) -> AsyncIterator[
        tuple[RabbitJobQueue, asyncio.Queue[Delivery]]]:
    """An api's side and a consuming dispatcher's side; the deliveries it takes, in a queue."""
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def on_job(delivery: Delivery) -> None:
        await deliveries.put(delivery)

    async with RabbitJobQueue(settings, ReplyRouter()) as queue, \
            RabbitJobSource(settings) as source:
        await source.consume(on_job, lambda _id: None)
        await source.follow({"m": prefetch})
        yield queue, deliveries


async def test_job_round_trip_with_replies(settings: Settings) -> None:
    async with connected(settings, prefetch=4) as (queue, deliveries):
        sub = queue.router.subscribe("j1")
        await queue.publish_job(job("j1"))
        delivery = await asyncio.wait_for(deliveries.get(), 10)
        assert delivery.job.id == "j1"
        assert not delivery.redelivered
        for seq, kind in enumerate((ReplyKind.CHUNK, ReplyKind.FINAL)):
            await delivery.reply(Reply(job_id="j1", attempt=delivery.attempt, seq=seq,
                                       kind=kind))
        await delivery.ack()
        assert [(await sub.get(5)).kind for _ in range(2)] == [ReplyKind.CHUNK,
                                                                ReplyKind.FINAL]


async def test_full_queue_rejects_the_publish(settings: Settings) -> None:
    small = settings.model_copy(update={"queue_max_length": 2})
    async with RabbitJobQueue(small, ReplyRouter()) as queue:
        await queue.publish_job(job("a"))
        await queue.publish_job(job("b"))
        started = time.monotonic()
        with pytest.raises(CapacityError):
            await queue.publish_job(job("c"))
        assert time.monotonic() - started < small.publish_timeout


async def test_unacked_job_is_redelivered_when_its_consumer_goes(settings: Settings) -> None:
    got: asyncio.Queue[Delivery] = asyncio.Queue()

    async def on_job(delivery: Delivery) -> None:
        await got.put(delivery)

    async with RabbitJobQueue(settings, ReplyRouter()) as queue:
        async with RabbitJobSource(settings) as first:
            await first.consume(on_job, lambda _id: None)
            await first.follow({"m": 1})
            await queue.publish_job(job("again"))
            await asyncio.wait_for(got.get(), 10)  # taken, never acked
        async with RabbitJobSource(settings) as second:
            await second.consume(on_job, lambda _id: None)
            await second.follow({"m": 1})
            redelivered = await asyncio.wait_for(got.get(), 10)
            assert redelivered.job.id == "again"
            assert redelivered.redelivered
            await redelivered.ack()


async def test_cancel_reaches_every_dispatcher(settings: Settings) -> None:
    seen: list[list[str]] = [[], []]

    async def ignore(_d: Delivery) -> None:
        return None

    async with (RabbitJobQueue(settings, ReplyRouter()) as queue,
                RabbitJobSource(settings) as a, RabbitJobSource(settings) as b):
        await a.consume(ignore, seen[0].append)
        await a.follow({"m": 1})
        await b.consume(ignore, seen[1].append)
        await b.follow({"m": 1})
        await queue.publish_cancel("job-x")
        await eventually(lambda: all(seen), timeout=10,
                         what="the cancel to reach both dispatchers")
    assert seen == [["job-x"], ["job-x"]]


async def test_publish_on_a_closed_connection_is_unavailable(settings: Settings) -> None:
    async with RabbitJobQueue(settings, ReplyRouter()) as queue:
        await queue.connection.close()
        with pytest.raises(BrokerUnavailableError):
            await queue.publish_job(job("lost"))


async def test_expired_job_is_never_delivered_and_its_client_gets_504(
        settings: Settings) -> None:
    got: list[str] = []

    async def on_job(delivery: Delivery) -> None:
        got.append(delivery.job.id)
        await delivery.ack()

    router = ReplyRouter()
    async with RabbitJobQueue(settings, router) as queue:
        sub = router.subscribe("short")
        await queue.publish_job(job("short", deadline=0.2))

        async def expired() -> bool:
            return await queue.depth("m") == 0

        # the job's deadline passes while it waits, before any dispatcher consumes
        await eventually(expired, timeout=10, what="the broker to drop the expired job")
        async with RabbitJobSource(settings) as source:
            await source.consume(on_job, lambda _id: None)
            await source.follow({"m": 1})
            reply = await sub.get(10)
    assert got == []
    assert reply.kind is ReplyKind.ERROR
    assert reply.error is not None
    assert reply.error.code == "deadline_exceeded"


async def test_replies_of_concurrent_jobs_reach_their_requests(settings: Settings) -> None:
    """Replies sent together (one batch) are routed one by one, each to its own request."""
    async with connected(settings, prefetch=16) as (queue, deliveries):
        subs = {f"b{i}": queue.router.subscribe(f"b{i}") for i in range(8)}
        for job_id in subs:
            await queue.publish_job(job(job_id))
        taken = [await asyncio.wait_for(deliveries.get(), 10) for _ in subs]
        await asyncio.gather(*(d.reply(Reply(job_id=d.job.id, attempt=d.attempt, seq=0,
                                             kind=ReplyKind.FINAL)) for d in taken))
        for job_id, sub in subs.items():
            assert (await sub.get(5)).job_id == job_id
        for d in taken:
            await d.ack()


async def test_cancels_are_heard_from_when_the_source_consumes(settings: Settings) -> None:
    async with RabbitJobSource(settings) as source:
        assert source.cancels_heard_since == float("inf")
        before = time.time()
        await source.consume(lambda _d: asyncio.sleep(0), lambda _id: None)
        await source.follow({"m": 1})
        assert before <= source.cancels_heard_since <= time.time()
    assert source.cancels_heard_since == float("inf")  # its connection is gone
