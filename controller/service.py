"""The controller's state and behaviour behind FastChat's controller routes.

``Controller`` owns the registry (over Redis, or the hash store it is given), the HTTP client
that asks workers for their status, and the task that expires silent workers. It is an async
context manager: entering it opens those, leaving it closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Self, cast

import httpx
import redis.asyncio as aioredis
from pydantic import ValidationError

from contracts.fastchat import (
    HeartBeatRequest,
    HeartBeatResponse,
    ModelsResponse,
    RegisterWorkerRequest,
    WorkerAddressesResponse,
    WorkerAddressRequest,
    WorkerAddressResponse,
    WorkerRegistered,
    WorkerStatus,
)
from contracts.settings import Settings
from contracts.upstream import UpstreamsRequest, UpstreamsResponse
from controller.config import UpstreamConfig
from controller.registry import HashStore, Registry
from controller.relay import relay_stream
from runtime.redis import redis_client

log = logging.getLogger(__name__)

STATUS_TIMEOUT = 5.0  # FastChat's controller waits as long for a worker's status
STORE_ERRORS = (OSError, aioredis.RedisError)


class NotStartedError(RuntimeError):
    """The controller was used outside its ``async with``."""


@dataclass(frozen=True, kw_only=True)
class _Open:
    registry: Registry
    client: httpx.AsyncClient


class Controller:
    """FastChat's controller: registrations, heart beats, model lists and dispatch.

    ``store`` replaces Redis (``mqgate serve`` passes an in-memory one); ``transport`` carries
    the calls to workers (tests pass a mock); ``clock`` tells the time (``time.time``);
    ``upstreams`` are the OpenAI-compatible upstream entries of the config file.
    """

    def __init__(self, settings: Settings, store: HashStore | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time,
                 upstreams: UpstreamConfig | None = None) -> None:
        self._settings = settings
        self._upstreams = upstreams
        self._store = store
        self._transport = transport
        self._clock = clock
        self._open: _Open | None = None
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            store = self._store if self._store is not None else self._redis(stack)
            client = await stack.enter_async_context(httpx.AsyncClient(
                timeout=STATUS_TIMEOUT, follow_redirects=False, transport=self._transport))
            registry = Registry(store, self._settings.topology,
                                expiration=self._settings.heart_beat_expiration,
                                clock=self._clock)
            expiry = asyncio.create_task(self._expire_forever())
            stack.push_async_callback(_cancelled, expiry)
            self._open = _Open(registry=registry, client=client)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        stack, self._stack, self._open = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def _redis(self, stack: AsyncExitStack) -> HashStore:
        redis = redis_client(self._settings, timeout=1.0, retries=1)  # URL or Sentinel
        stack.push_async_callback(redis.aclose)
        return cast(HashStore, redis)  # its types cannot tell that decoded answers are str

    @property
    def _running(self) -> _Open:
        if self._open is None:
            raise NotStartedError("the controller is used outside its 'async with'")
        return self._open

    # --- workers ------------------------------------------------------------------------

    async def register(self, request: RegisterWorkerRequest) -> None:
        """Record the worker under a new registration id; a worker that sent no status is
        asked for it, and one that does not answer is not registered."""
        status = request.worker_status or await self._fetch_status(request.worker_name)
        if status is None:
            return
        await self._record(request.worker_name, status,
                           check_heart_beat=request.check_heart_beat,
                           multimodal=request.multimodal)
        log.info("registered worker %s for %s", request.worker_name, status.model_names)

    async def heart_beat(self, request: HeartBeatRequest) -> HeartBeatResponse:
        """``exist`` is false for a worker the registry does not know: it registers again."""
        known = await self._running.registry.heart_beat(request.worker_name,
                                                         request.queue_length)
        return HeartBeatResponse(exist=known)

    async def refresh(self) -> None:
        """Ask every worker for its status again; those that do not answer are dropped."""
        registry = self._running.registry
        known = await registry.workers(include_expired=True)
        statuses = await asyncio.gather(*(self._fetch_status(name) for name in known))
        for (name, info), status in zip(known.items(), statuses, strict=True):
            if status is None:
                await registry.remove(name)
            else:
                await self._record(name, status, check_heart_beat=info.check_heart_beat,
                                   multimodal=info.multimodal)

    async def remove_expired(self) -> list[str]:
        """Drop the workers whose heart beats stopped; returns their addresses."""
        expired = await self._running.registry.remove_expired()
        for name in expired:
            log.info("worker %s expired (no heart beat)", name)
        return expired

    async def _record(self, name: str, status: WorkerStatus, *, check_heart_beat: bool,
                      multimodal: bool) -> None:
        notice = await self._running.registry.register(
            name, status, check_heart_beat=check_heart_beat, multimodal=multimodal)
        await self._announce(notice)

    async def _announce(self, notice: WorkerRegistered) -> None:
        """Tell dispatchers to forget what they cached about the worker's earlier
        registration; a dispatcher that misses it still sees the new id with the address."""
        try:
            await self._running.registry.announce(notice)
        except STORE_ERRORS:
            log.warning("could not announce the registration of worker %s", notice.worker_name)

    async def _fetch_status(self, worker: str) -> WorkerStatus | None:
        try:
            response = await self._running.client.post(worker + "/worker_get_status")
            response.raise_for_status()
            return WorkerStatus.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError):
            log.warning("could not get the status of worker %s", worker)
            return None

    async def _expire_forever(self) -> None:
        interval = self._settings.heart_beat_expiration / 3
        while True:
            await asyncio.sleep(interval)  # a timer: expiry is due every third of the expiration
            try:
                await self.remove_expired()
            except STORE_ERRORS:
                log.warning("could not expire workers: redis is unavailable")

    # --- models and addresses -----------------------------------------------------------

    async def models(self, *, multimodal: bool | None = None) -> ModelsResponse:
        """Every model a live worker or an upstream entry serves, or those of multimodal or
        language workers (upstream entries count as language models)."""
        models = await self._running.registry.models(multimodal=multimodal)
        if self._upstreams is not None and not multimodal:
            models = sorted({*models, *self._upstreams.table.models()})
        return ModelsResponse(models=models)

    # --- upstreams ----------------------------------------------------------------------

    def upstreams(self, request: UpstreamsRequest) -> UpstreamsResponse:
        """The config file's upstream entries of the model (no keys: references to them)."""
        table = self._upstreams.table if self._upstreams is not None else None
        return UpstreamsResponse(entries=table.of(request.model) if table is not None else [])

    async def reload_upstreams(self) -> None:
        """Read the config file again, and tell dispatchers which models changed."""
        if self._upstreams is None:
            return
        changed = self._upstreams.reload()
        if changed:
            await self._announce(WorkerRegistered(
                worker_name=f"config:{self._upstreams.path}", registration=uuid.uuid4().hex,
                model_names=sorted(changed)))

    async def worker_address(self, request: WorkerAddressRequest) -> WorkerAddressResponse:
        """One worker of the model by the dispatch method; ``""`` when none serves it."""
        address = await self._running.registry.choose(request.model,
                                                      self._settings.dispatch_method)
        return WorkerAddressResponse(address=address)

    async def worker_addresses(self, request: WorkerAddressRequest) -> WorkerAddressesResponse:
        found = await self._running.registry.addresses(request.model)
        return WorkerAddressesResponse(addresses=list(found), registrations=found)

    async def status(self) -> WorkerStatus:
        """The controller as one worker of a parent controller: all its workers together."""
        workers = (await self._running.registry.workers()).values()
        return WorkerStatus(model_names=sorted({m for w in workers for m in w.model_names}),
                            speed=sum(w.speed for w in workers),
                            queue_length=sum(w.queue_length for w in workers))

    async def relay(self, body: bytes) -> AsyncIterator[bytes]:
        """``/worker_generate_stream`` sent on to a worker of the body's model, picked now."""
        try:
            model = WorkerAddressRequest.model_validate_json(body).model
        except ValidationError:
            model = ""
        address = ""
        if model:
            address = await self._running.registry.choose(model, self._settings.dispatch_method)
        return relay_stream(self._running.client, address, body)

    async def ready(self) -> bool:
        """Whether the registry's store answers."""
        try:
            await self._running.registry.models()
        except STORE_ERRORS:
            return False
        return True


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
