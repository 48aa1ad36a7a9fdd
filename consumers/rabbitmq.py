"""The RabbitMQ transport (aio-pika): robust connections, confirms, bounded jobs queue, and
the api's side of it. A dispatcher's side is in ``rabbitmq_source``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ExchangeType,
    HeadersType,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError, PublishError
from aiormq import spec
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from consumers.rabbitmq_cluster import connect_cluster, random_node, round_of_nodes
from consumers.reply_router import ReplyRouter
from contracts.errors import BrokerUnavailableError, CapacityError
from contracts.jobs import MAX_TIER_RANK, Cancel, Job, Reply, ReplyBatch
from contracts.settings import Settings
from contracts.topology import REPLY_BATCH_TYPE, REPLY_EXCHANGE_HEADER

log = logging.getLogger(__name__)

BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, TimeoutError,
                 RuntimeError)


def lane_arguments(settings: Settings) -> dict[str, Any]:
    """A lane's queue arguments, the same on every side that declares it: bounded (a full lane
    refuses at once), dead-lettered, deleted after ``MQGATE_LANE_EXPIRES`` unused, and on
    classic queues with one priority per service tier."""
    args: dict[str, Any] = {
        "x-max-length": settings.queue_max_length,
        "x-overflow": "reject-publish",
        "x-dead-letter-exchange": settings.topology.dead_letter_exchange,
        "x-queue-type": settings.queue_type,
        "x-expires": int(settings.lane_expires * 1000),
    }
    if settings.queue_type == "quorum":
        args["x-delivery-limit"] = settings.delivery_limit
    else:
        args["x-max-priority"] = MAX_TIER_RANK
    return args


async def declare_lane(channel: AbstractRobustChannel, settings: Settings,
                       model: str) -> AbstractQueue:
    """Declare ``model``'s lane and bind it to the jobs exchange under its own name, on a
    robust channel, so that a reconnection restores both."""
    topology = settings.topology
    name = topology.lane(model)
    await channel.declare_exchange(topology.jobs_exchange, ExchangeType.DIRECT, durable=True)
    queue = await channel.declare_queue(name, durable=True, arguments=lane_arguments(settings))
    await queue.bind(topology.jobs_exchange, routing_key=name)
    return queue


async def lane_state(channel: AbstractRobustChannel, settings: Settings,
                     model: str) -> spec.Queue.DeclareOk | None:
    """A lane's message and consumer counts, fresh from the broker, or None when the broker
    cannot say. Declared on the raw channel (aio-pika's robust channel answers a repeated
    declare from memory), actively, with the lane's own arguments: a lane nobody declared yet
    is created empty, never a channel-closing 404."""
    try:
        async with asyncio.timeout(settings.publish_timeout):
            underlay = await channel.get_underlay_channel()
            return await underlay.queue_declare(settings.topology.lane(model), durable=True,
                                                arguments=lane_arguments(settings))
    except BROKER_ERRORS:
        return None


def dead_letter_arguments(settings: Settings) -> dict[str, Any]:
    """The dead-letter queue's arguments: a quorum queue where the lanes are, so that it is
    there whichever node a process reaches (a classic durable queue cannot be declared while
    its node is down, which would keep a reconnection to another node from completing)."""
    return {"x-queue-type": "quorum"} if settings.queue_type == "quorum" else {}


def job_delivery_mode(settings: Settings) -> int:
    """2 (persistent) on quorum queues, which replicate every message anyway; 1 (transient) on
    classic ones. A classic queue's jobs outlive a broker restart only on its disk: by then the
    api has lost its connection and answered every waiting request with a 503, so a persisted
    job would only make a worker generate for nobody, and writing it costs the broker half its
    CPU per request."""
    return 2 if settings.queue_type == "quorum" else 1


class RabbitBroker:
    """A robust connection and the shared topology; the base of both sides."""

    def __init__(self, settings: Settings, *, connect_timeout: float = 30.0) -> None:
        self.settings = settings
        self.topology = settings.topology
        self._connect_timeout = connect_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channels: list[AbstractRobustChannel] = []  # strong refs: aio-pika holds weak ones

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("the broker connection is not started")
        return self._connection

    async def __aenter__(self) -> RabbitBroker:
        urls = self.settings.amqp_urls
        first = random_node(urls)
        # each attempt on the next node; a second apart once every node failed
        retrying = AsyncRetrying(retry=retry_if_exception_type(BROKER_ERRORS),
                                 stop=stop_after_delay(self._connect_timeout),
                                 wait=round_of_nodes(len(urls), wait_fixed(1.0)), reraise=True)
        async for attempt in retrying:
            with attempt:
                self._connection = await connect_cluster(
                    urls, first=first + attempt.retry_state.attempt_number - 1,
                    reconnect_interval=self.settings.reconnect_interval,
                    heartbeat=self.settings.heartbeat, name=f"mqgate-{type(self).__name__}")
        await self._declare()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._connection is not None:
            with contextlib.suppress(*BROKER_ERRORS):
                await self._connection.close()
            self._connection = None

    async def open_channel(self, *, confirms: bool) -> AbstractRobustChannel:
        channel = await self.connection.channel(publisher_confirms=confirms,
                                                on_return_raises=confirms)
        self._channels.append(channel)
        return channel

    async def _declare(self) -> None:
        channel = await self.open_channel(confirms=False)
        dlx = await channel.declare_exchange(self.topology.dead_letter_exchange,
                                             ExchangeType.FANOUT, durable=True)
        dead = await channel.declare_queue(self.topology.dead_letter_queue, durable=True,
                                           arguments=dead_letter_arguments(self.settings))
        await dead.bind(dlx)
        await channel.declare_exchange(self.topology.cancel_exchange, ExchangeType.FANOUT,
                                       durable=True)
        await channel.declare_exchange(self.topology.reply_exchange, ExchangeType.DIRECT,
                                       durable=True)
        await channel.declare_exchange(self.topology.jobs_exchange, ExchangeType.DIRECT,
                                       durable=True)

    async def ping(self) -> bool:
        """Whether the connection is up now (not closed, not between two nodes)."""
        connection = self._connection
        return (connection is not None and not connection.is_closed
                and connection.connected.is_set())

    async def _publish(self, channel: AbstractRobustChannel, routing_key: str, body: bytes,
                       properties: spec.Basic.Properties, *, exchange: str) -> None:
        """Publish to ``exchange``, mandatory, waiting for the confirm when the channel has
        them. The hot paths build AMQP properties directly instead of aio-pika Messages; a
        closed channel fails at once, as aio-pika's exchanges do."""
        if channel.is_closed:
            raise ChannelInvalidStateError(f"{channel!r} is closed")
        timeout = self.settings.publish_timeout
        async with asyncio.timeout(timeout):
            underlay = await channel.get_underlay_channel()
        await underlay.basic_publish(body, exchange=exchange, routing_key=routing_key,
                                     properties=properties, mandatory=True, timeout=timeout)


class RabbitJobQueue(RabbitBroker):
    """The api's side: publishes jobs with confirms and consumes its own reply queue."""

    def __init__(self, settings: Settings, router: ReplyRouter, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.router = router
        self.reply_queue_name = self.topology.reply_queue()
        self._job_delivery_mode = job_delivery_mode(settings)
        self._job_headers: HeadersType = {REPLY_EXCHANGE_HEADER: self.topology.reply_exchange}
        self._probe: AbstractRobustChannel | None = None  # asks the broker about lanes
        self._lanes: set[str] = set()  # models whose lane this process has declared

    async def __aenter__(self) -> RabbitJobQueue:
        await super().__aenter__()
        self._publish_channel = await self.open_channel(confirms=True)
        self._cancels = await self._publish_channel.get_exchange(self.topology.cancel_exchange)
        replies = await self.open_channel(confirms=False)
        await replies.set_qos(prefetch_count=0)
        queue = await replies.declare_queue(self.reply_queue_name, exclusive=True,
                                            auto_delete=True, durable=False)
        # declared and bound on this robust channel, so a reconnection restores both
        await replies.declare_exchange(self.topology.reply_exchange, ExchangeType.DIRECT,
                                       durable=True)
        await queue.bind(self.topology.reply_exchange, routing_key=self.reply_queue_name)
        await queue.consume(self._on_reply, no_ack=True)
        self.connection.close_callbacks.add(self._on_connection_lost)
        return self

    def _on_connection_lost(self, *_args: object) -> None:
        """Replies in flight are lost with the connection: answer the waiting requests now
        instead of at their deadlines."""
        if len(self.router):
            log.warning("broker connection lost; failing %d waiting requests", len(self.router))
        self.router.fail_all(BrokerUnavailableError("the connection to the message broker "
                                                    "was lost while waiting for the answer"))

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        try:
            if message.type == REPLY_BATCH_TYPE:
                replies = ReplyBatch.model_validate_json(message.body).replies
            else:
                replies = [Reply.model_validate_json(message.body)]
        except ValidationError:
            log.warning("dropped a malformed reply")
            return
        for reply in replies:
            self.router.deliver(reply)

    async def publish_job(self, job: Job) -> None:
        """Publish ``job`` to its model's lane (declared on first use), with its tier as the
        message priority. A lane gone since (expired while unused) is declared again."""
        properties = spec.Basic.Properties(
            content_type="application/json", delivery_mode=self._job_delivery_mode,
            correlation_id=job.id, message_id=job.id, reply_to=self.reply_queue_name,
            expiration=str(max(int(job.remaining() * 1000), 1)), headers=self._job_headers,
            priority=job.tier.rank)
        body = job.model_dump_json().encode()
        try:
            try:
                await self._publish_to_lane(job.model, body, properties)
            except PublishError:  # unroutable: the lane expired; declare it again
                self._lanes.discard(job.model)
                await self._publish_to_lane(job.model, body, properties)
        except DeliveryError as exc:
            raise CapacityError(f"the queue of model '{job.model}' is full; retry later"
                                ) from exc
        except PublishError as exc:
            raise BrokerUnavailableError("the model's queue is missing on the broker") from exc
        except BROKER_ERRORS as exc:
            raise BrokerUnavailableError("the message broker is unavailable") from exc

    async def _publish_to_lane(self, model: str, body: bytes,
                               properties: spec.Basic.Properties) -> None:
        if model not in self._lanes:
            async with asyncio.timeout(self.settings.publish_timeout):
                await declare_lane(self._publish_channel, self.settings, model)
            self._lanes.add(model)
        await self._publish(self._publish_channel, self.topology.lane(model), body, properties,
                            exchange=self.topology.jobs_exchange)

    async def _lane_state(self, model: str) -> spec.Queue.DeclareOk | None:
        try:
            if self._probe is None:
                async with asyncio.timeout(self.settings.publish_timeout):
                    self._probe = await self.open_channel(confirms=False)
        except BROKER_ERRORS:
            return None
        return await lane_state(self._probe, self.settings, model)

    def lanes(self) -> list[str]:
        return sorted(self._lanes)

    async def depth(self, model: str) -> int | None:
        state = await self._lane_state(model)
        return None if state is None or state.message_count is None else int(state.message_count)

    async def consumers(self, model: str) -> int | None:
        state = await self._lane_state(model)
        return None if state is None or state.consumer_count is None else int(
            state.consumer_count)

    async def publish_cancel(self, job_id: str) -> None:
        message = aio_pika.Message(Cancel(job_id=job_id).model_dump_json().encode())
        try:
            await self._cancels.publish(message, routing_key="", mandatory=False,
                                        timeout=self.settings.publish_timeout)
        except (*BROKER_ERRORS, DeliveryError, PublishError):
            log.warning("could not publish a cancel; the job runs to its end")
