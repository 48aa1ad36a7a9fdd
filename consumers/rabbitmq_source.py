"""A dispatcher's side of the RabbitMQ transport: jobs with prefetch, cancels, replies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from aio_pika.exceptions import DeliveryError, PublishError
from aiormq import spec
from pydantic import ValidationError

from consumers.rabbitmq import (
    BROKER_ERRORS,
    RabbitBroker,
    dead_letter_arguments,
    declare_lane,
    lane_state,
)
from consumers.reply_outbox import ReplyOutbox
from consumers.transport import CancelHandler, Delivery, DeliveryHandler
from contracts.errors import DeadlineExceededError, MqgateError, PoisonJobError
from contracts.jobs import Cancel, Job, Reply, ReplyKind
from contracts.settings import Settings
from contracts.topology import REPLY_BATCH_TYPE, REPLY_EXCHANGE_HEADER

log = logging.getLogger(__name__)


class ReplyRoute(NamedTuple):
    """Where one api process's replies go: an exchange and the reply queue's name."""

    exchange: str
    queue: str


@dataclass
class _Lane:
    """One followed lane: a channel of its own (so its prefetch is its own) and a consumer."""

    channel: AbstractRobustChannel
    queue: AbstractQueue
    prefetch: int = 0
    tag: str | None = None


class RabbitJobSource(RabbitBroker):
    """A dispatcher's side: consumes the lanes it follows, listens for cancels, sends
    replies."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.consumer_id = uuid.uuid4().hex[:12]
        self._settling: set[asyncio.Future[None]] = set()
        self._lanes: dict[str, _Lane] = {}
        self._on_job: DeliveryHandler | None = None
        self._probe: AbstractRobustChannel | None = None
        self._legacy: _Lane | None = None
        self.cancels_heard_since = math.inf

    def _hearing_cancels(self, *_args: object) -> None:
        self.cancels_heard_since = time.time()

    def _deaf_to_cancels(self, *_args: object) -> None:
        """Cancels published from now until the consumer is back are lost."""
        self.cancels_heard_since = math.inf

    async def __aenter__(self) -> RabbitJobSource:
        await super().__aenter__()
        self._replies = await self.open_channel(confirms=True)
        self._outbox: ReplyOutbox[ReplyRoute] = ReplyOutbox(self._publish_replies)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._outbox.aclose()
        await super().__aexit__(*exc_info)

    async def consume(self, on_job: DeliveryHandler, on_cancel: CancelHandler) -> None:
        cancels = await self.open_channel(confirms=False)
        cancel_queue = await cancels.declare_queue(self.topology.cancel_queue(), exclusive=True,
                                                   auto_delete=True, durable=False)
        await cancel_queue.bind(self.topology.cancel_exchange)

        async def cancelled(message: AbstractIncomingMessage) -> None:
            with contextlib.suppress(ValidationError):
                on_cancel(Cancel.model_validate_json(message.body).job_id)

        await cancel_queue.consume(cancelled, no_ack=True)
        self._hearing_cancels()
        cancels.close_callbacks.add(self._deaf_to_cancels)
        cancels.reopen_callbacks.add(self._hearing_cancels)
        self.connection.close_callbacks.add(self._deaf_to_cancels)
        self.connection.reconnect_callbacks.add(self._hearing_cancels)
        self._on_job = on_job
        await self._consume_legacy_queue()
        dead_channel = await self.open_channel(confirms=False)
        dead = await dead_channel.declare_queue(self.topology.dead_letter_queue, durable=True,
                                                arguments=dead_letter_arguments(self.settings))
        await dead.consume(self._dead_lettered, no_ack=False)

    async def _consume_legacy_queue(self) -> None:
        """Take the jobs that apis of the release before lanes publish to ``<ns>.jobs``, where
        that queue exists: dispatchers upgraded first answer them, so a rolling upgrade
        (dispatchers, then apis) loses nothing. Those jobs are not scheduled by lane."""
        name = self.topology.jobs_queue
        probe = await self.connection.channel()
        try:
            await probe.declare_queue(name, passive=True)
        except BROKER_ERRORS:
            return  # no such queue (the broker closed the probe's channel)
        with contextlib.suppress(*BROKER_ERRORS):
            await probe.close()
        channel = await self.open_channel(confirms=False)
        await channel.set_qos(prefetch_count=self.settings.concurrency)
        queue = await channel.declare_queue(name, passive=True)

        self._legacy = _Lane(channel, queue, self.settings.concurrency,
                             await queue.consume(self._received, no_ack=False))
        log.info("also taking jobs from %s, where apis of an earlier release put them", name)

    async def follow(self, lanes: Mapping[str, int]) -> None:
        for model in [m for m in self._lanes if m not in lanes]:
            await self._detach(self._lanes[model])
        for model, prefetch in lanes.items():
            lane = self._lanes.get(model)
            if lane is None:
                channel = await self.open_channel(confirms=False)
                # declared (not merely looked up) on its channel, so that a robust
                # reconnection re-declares the lane and restores the consumer
                lane = _Lane(channel, await declare_lane(channel, self.settings, model))
                self._lanes[model] = lane
            if lane.tag is None or lane.prefetch != prefetch:
                await self._attach(model, lane, prefetch)

    async def _attach(self, model: str, lane: _Lane, prefetch: int) -> None:
        """(Re)consume with ``prefetch``: the broker applies a prefetch to consumers made
        after it is set, so a change means a new consumer. Jobs already delivered stay."""
        await self._detach(lane)
        await lane.channel.set_qos(prefetch_count=prefetch)
        lane.tag = await lane.queue.consume(self._received, no_ack=False)
        lane.prefetch = prefetch
        log.info("following the lane of %s, holding up to %d of its jobs", model, prefetch)

    async def _received(self, message: AbstractIncomingMessage) -> None:
        delivery = self._delivery(message)
        if delivery is not None and self._on_job is not None:
            await self._on_job(delivery)

    @staticmethod
    async def _detach(lane: _Lane) -> None:
        if lane.tag is not None:
            with contextlib.suppress(*BROKER_ERRORS):
                await lane.queue.cancel(lane.tag)
            lane.tag = None

    async def lane_consumers(self, model: str) -> int | None:
        try:
            if self._probe is None:
                async with asyncio.timeout(self.settings.publish_timeout):
                    self._probe = await self.open_channel(confirms=False)
        except BROKER_ERRORS:
            return None
        state = await lane_state(self._probe, self.settings, model)
        return None if state is None or state.consumer_count is None else int(
            state.consumer_count)

    async def _dead_lettered(self, message: AbstractIncomingMessage) -> None:
        """Answer the client of a job the broker gave up on, so it is not left waiting."""
        deaths = message.headers.get("x-death") if message.headers else None
        reason = ""
        if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
            reason = str(deaths[0].get("reason", ""))
        error: MqgateError
        if reason == "expired":
            error = DeadlineExceededError("the request's deadline passed while it was queued")
        else:
            error = PoisonJobError("the request failed on every dispatcher that tried it")
        log.warning("dead-lettered job (%s) answered with %s", reason or "unknown", error.code)
        if message.reply_to and message.correlation_id:
            reply = Reply(job_id=message.correlation_id, attempt=f"dead:{reason}", seq=0,
                          kind=ReplyKind.ERROR, error=error.detail())
            with contextlib.suppress(*BROKER_ERRORS, DeliveryError, PublishError):
                await self._outbox.send(self._reply_route(message), reply)
        with contextlib.suppress(*BROKER_ERRORS):
            await message.ack()

    def _delivery(self, message: AbstractIncomingMessage) -> Delivery | None:
        try:
            job = Job.model_validate_json(message.body)
        except ValidationError:
            log.exception("rejected a malformed job to the dead-letter queue")
            task = asyncio.ensure_future(message.reject(requeue=False))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
            return None
        route = self._reply_route(message)
        count = message.headers.get("x-delivery-count", 0) if message.headers else 0

        async def reply(r: Reply) -> None:
            await self._outbox.send(route, r)

        async def ack() -> None:
            with contextlib.suppress(*BROKER_ERRORS):  # after a reconnect: already requeued
                await message.ack()

        async def requeue() -> None:
            with contextlib.suppress(*BROKER_ERRORS):
                await message.nack(requeue=True)

        return Delivery(job=job, attempt=f"{self.consumer_id}:{message.delivery_tag}:"
                                          f"{time.monotonic_ns()}",
                        redelivered=bool(message.redelivered),
                        delivery_count=int(count) if isinstance(count, int) else 0,
                        reply=reply, ack=ack, requeue=requeue)

    def _reply_route(self, message: AbstractIncomingMessage) -> ReplyRoute:
        """The reply exchange when the job's api binds its queue to it (it says so in a
        header), else the default exchange, which an api of an earlier release relies on."""
        exchange = self.topology.reply_exchange
        named = message.headers.get(REPLY_EXCHANGE_HEADER) if message.headers else None
        return ReplyRoute(exchange if named == exchange else "", message.reply_to or "")

    async def _publish_replies(self, route: ReplyRoute, body: bytes) -> None:
        await self._publish(self._replies, route.queue, body, spec.Basic.Properties(
            content_type="application/json", delivery_mode=1, message_type=REPLY_BATCH_TYPE),
            exchange=route.exchange)

    async def stop_consuming(self) -> None:
        for lane in [*self._lanes.values(), *filter(None, [self._legacy])]:
            await self._detach(lane)
