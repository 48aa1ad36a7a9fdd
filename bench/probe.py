"""The bare AMQP request/reply round trip on this machine: publish with confirms to a durable
queue, a consumer that replies to an exclusive queue and acks, concurrency 1. The request is
sent as mqgate sends jobs to its default (classic) queue: transient."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika


async def amqp_round_trip(url: str, *, count: int = 300) -> float:
    """The median round trip in milliseconds."""
    connection = await aio_pika.connect_robust(url)
    try:
        publish = await connection.channel(publisher_confirms=True)
        consume = await connection.channel(publisher_confirms=False)
        name = f"bench.probe.{uuid.uuid4().hex}"
        jobs = await consume.declare_queue(name, durable=True, auto_delete=True)
        replies = await consume.declare_queue(exclusive=True)
        waiting: dict[str, asyncio.Future[None]] = {}

        async def serve(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await publish.default_exchange.publish(
                aio_pika.Message(b"reply", correlation_id=message.correlation_id),
                routing_key=message.reply_to or "")
            await message.ack()

        async def answer(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            future = waiting.pop(message.correlation_id or "", None)
            if future is not None:
                future.set_result(None)

        tag = await jobs.consume(serve)
        await replies.consume(answer, no_ack=True)
        times: list[float] = []
        for _ in range(count):
            cid = uuid.uuid4().hex
            done = waiting[cid] = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            await publish.default_exchange.publish(
                aio_pika.Message(b"job", correlation_id=cid, reply_to=replies.name,
                                 delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT),
                routing_key=name)
            await done
            times.append(time.perf_counter() - started)
        await jobs.cancel(tag)
        await jobs.delete(if_unused=False, if_empty=False)
        times.sort()
        return times[len(times) // 2] * 1000
    finally:
        await connection.close()
