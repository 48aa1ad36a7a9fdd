"""During a rolling upgrade (dispatchers first, then apis), an api of the release before lanes
and the reply exchange still gets its jobs answered: that release published jobs to the
``<namespace>.jobs`` queue through the default exchange, and its api did not bind its reply
queue to ``<namespace>.replies``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from consumers.rabbitmq_source import RabbitJobSource
from consumers.transport import Delivery
from contracts.jobs import Job, JobKind, Reply, ReplyBatch, ReplyKind
from contracts.settings import Settings
from contracts.topology import REPLY_BATCH_TYPE

pytestmark = pytest.mark.integration


def job(job_id: str) -> Job:
    return Job(id=job_id, kind=JobKind.CHAT, model="m", prompts=["p"],
               deadline=time.time() + 30)


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[AbstractChannel]:
    """A plain channel, as the earlier release's processes used."""
    connection = await aio_pika.connect(settings.amqp_url, timeout=5)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def consumed(queue: aio_pika.abc.AbstractQueue) -> asyncio.Queue[AbstractIncomingMessage]:
    got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    await queue.consume(got.put, no_ack=True)
    return got


async def test_an_earlier_api_gets_its_job_answered_by_this_dispatcher(
        settings: Settings, channel: AbstractChannel) -> None:
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def on_job(delivery: Delivery) -> None:
        await deliveries.put(delivery)

    # the earlier release's api made the one jobs queue
    await channel.declare_queue(settings.topology.jobs_queue, durable=True, arguments={
        "x-max-length": settings.queue_max_length, "x-overflow": "reject-publish",
        "x-dead-letter-exchange": settings.topology.dead_letter_exchange,
        "x-queue-type": "classic"})
    async with RabbitJobSource(settings) as source:
        await source.consume(on_job, lambda _id: None)
        replies = await channel.declare_queue(settings.topology.reply_queue(), exclusive=True)
        answers = await consumed(replies)
        await channel.default_exchange.publish(
            aio_pika.Message(job("old-api").model_dump_json().encode(),
                             correlation_id="old-api", reply_to=replies.name),
            routing_key=settings.topology.jobs_queue)
        delivery = await asyncio.wait_for(deliveries.get(), 10)
        await delivery.reply(Reply(job_id="old-api", attempt=delivery.attempt, seq=0,
                                   kind=ReplyKind.FINAL))
        await delivery.ack()
        message = await asyncio.wait_for(answers.get(), 10)
    assert message.type == REPLY_BATCH_TYPE
    assert [r.job_id for r in ReplyBatch.model_validate_json(message.body).replies] == [
        "old-api"]
