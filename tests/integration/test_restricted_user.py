"""The api's and the dispatcher's RabbitMQ sides work as a user whose rights are
``^<namespace>\\.`` only, as docs/operations.md advises."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused

from consumers.rabbitmq import RabbitJobQueue
from consumers.rabbitmq_source import RabbitJobSource
from consumers.reply_router import ReplyRouter
from consumers.transport import Delivery
from contracts.jobs import Job, JobKind, Reply, ReplyKind
from contracts.settings import Settings
from tests.rabbitmq_user import restricted_user

pytestmark = pytest.mark.integration


def job(job_id: str, deadline: float = 30) -> Job:
    return Job(id=job_id, kind=JobKind.CHAT, model="m", prompts=["p"],
               deadline=time.time() + deadline)


@pytest.fixture
def restricted(settings: Settings) -> Iterator[Settings]:
    with restricted_user(settings.amqp_url, settings.namespace) as url:
        yield settings.model_copy(update={"amqp_url": url})


@pytest.fixture
async def deliveries() -> AsyncIterator[asyncio.Queue[Delivery]]:
    got: asyncio.Queue[Delivery] = asyncio.Queue()
    yield got
    while not got.empty():
        await got.get_nowait().ack()


async def test_the_user_may_not_publish_to_the_default_exchange(restricted: Settings) -> None:
    """The restriction is real: what mqgate published before, this user cannot."""
    connection = await aio_pika.connect(restricted.amqp_url, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        with pytest.raises(ChannelAccessRefused):
            await channel.default_exchange.publish(
                aio_pika.Message(b"{}"), routing_key=restricted.topology.jobs_queue, timeout=5)
    finally:
        await connection.close()


async def test_a_job_its_replies_and_a_cancel_go_through(
        restricted: Settings, deliveries: asyncio.Queue[Delivery]) -> None:
    cancelled: list[str] = []
    heard = asyncio.Event()

    async def on_job(delivery: Delivery) -> None:
        await deliveries.put(delivery)

    def on_cancel(job_id: str) -> None:
        cancelled.append(job_id)
        heard.set()

    async with RabbitJobQueue(restricted, ReplyRouter()) as queue, \
            RabbitJobSource(restricted) as source:
        await source.consume(on_job, on_cancel)
        await source.follow({"m": 4})
        sub = queue.router.subscribe("r1")
        await queue.publish_job(job("r1"))
        delivery = await asyncio.wait_for(deliveries.get(), 10)
        for seq, kind in enumerate((ReplyKind.CHUNK, ReplyKind.FINAL)):
            await delivery.reply(Reply(job_id="r1", attempt=delivery.attempt, seq=seq,
                                       kind=kind))
        await delivery.ack()
        assert [(await sub.get(5)).kind for _ in range(2)] == [ReplyKind.CHUNK,
                                                                ReplyKind.FINAL]
        assert await queue.depth("m") == 0
        await queue.publish_cancel("r1")
        await asyncio.wait_for(heard.wait(), 10)
    assert cancelled == ["r1"]


async def test_a_job_that_expires_queued_is_answered_through_the_dead_letter_queue(
        restricted: Settings, deliveries: asyncio.Queue[Delivery]) -> None:
    async def on_job(delivery: Delivery) -> None:
        await deliveries.put(delivery)

    async with RabbitJobQueue(restricted, ReplyRouter()) as queue:
        sub = queue.router.subscribe("gone")
        await queue.publish_job(job("gone", deadline=0.001))  # expired before anyone consumes
        async with RabbitJobSource(restricted) as source:
            await source.consume(on_job, lambda _id: None)
            await source.follow({"m": 1})
            reply = await sub.get(10)
    assert deliveries.empty()
    assert reply.kind is ReplyKind.ERROR
    assert reply.error is not None
    assert reply.error.code == "deadline_exceeded"
