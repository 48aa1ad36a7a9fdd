"""FastChat's controller protocol over a Redis registry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.responses import Response, StreamingResponse

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
from controller.registry import HashStore, Registry

log = logging.getLogger(__name__)

CONTROLLER_NO_WORKER = 50005
CONTROLLER_WORKER_TIMEOUT = 50006
_STATUS_TIMEOUT = 5.0


def _json(data: object) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


async def _expire_loop(registry: Registry, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            for name in await registry.remove_expired():
                log.info("worker %s expired (no heart beat)", name)
        except (OSError, aioredis.RedisError):
            log.warning("could not expire workers: redis is unavailable")


def create_controller_app(settings: Settings,  # noqa: C901 - one handler per route
                          store: HashStore | None = None) -> FastAPI:
    """The controller; its registry lives in Redis unless ``store`` is given."""
    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        redis = None
        if store is None:
            redis = aioredis.from_url(settings.redis_url, decode_responses=True,
                                      socket_timeout=1.0, socket_connect_timeout=1.0,
                                      retry=Retry(NoBackoff(), 1))
        client = httpx.AsyncClient(timeout=_STATUS_TIMEOUT, follow_redirects=False)
        registry = Registry(store or redis, settings.topology,  # type: ignore[arg-type]
                            expiration=settings.heart_beat_expiration)
        state.update(registry=registry, client=client)
        expiry = asyncio.create_task(_expire_loop(registry, settings.heart_beat_expiration / 3))
        try:
            yield
        finally:
            expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await expiry
            await client.aclose()
            if redis is not None:
                await redis.aclose()

    def registry() -> Registry:
        value = state["registry"]
        assert isinstance(value, Registry)
        return value

    def client() -> httpx.AsyncClient:
        value = state["client"]
        assert isinstance(value, httpx.AsyncClient)
        return value

    async def fetch_status(worker: str) -> WorkerStatus | None:
        try:
            response = await client().post(worker + "/worker_get_status")
            response.raise_for_status()
            return WorkerStatus.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError):
            log.warning("could not get the status of worker %s", worker)
            return None

    async def announce(notice: WorkerRegistered) -> None:
        """Tell dispatchers to forget what they cached about the worker's earlier
        registration; a dispatcher that misses it still sees the new id with the address."""
        try:
            await registry().announce(notice)
        except (OSError, aioredis.RedisError):
            log.warning("could not announce the registration of worker %s", notice.worker_name)

    app = FastAPI(title="mqgate controller", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.post("/register_worker")
    async def register_worker(body: RegisterWorkerRequest) -> Response:
        status = body.worker_status or await fetch_status(body.worker_name)
        if status is not None:
            await announce(await registry().register(body.worker_name, status,
                                                     check_heart_beat=body.check_heart_beat,
                                                     multimodal=body.multimodal))
            log.info("registered worker %s for %s", body.worker_name, status.model_names)
        return _json(None)

    @app.post("/refresh_all_workers")
    async def refresh_all_workers() -> Response:
        known = await registry().workers(include_expired=True)
        statuses = await asyncio.gather(*(fetch_status(name) for name in known))
        for (name, info), status in zip(known.items(), statuses, strict=True):
            if status is None:
                await registry().remove(name)
            else:
                await announce(await registry().register(
                    name, status, check_heart_beat=info.check_heart_beat,
                    multimodal=info.multimodal))
        return _json(None)

    @app.post("/list_models")
    async def list_models() -> ModelsResponse:
        return ModelsResponse(models=await registry().models())

    @app.post("/list_multimodal_models")
    async def list_multimodal_models() -> ModelsResponse:
        return ModelsResponse(models=await registry().models(multimodal=True))

    @app.post("/list_language_models")
    async def list_language_models() -> ModelsResponse:
        return ModelsResponse(models=await registry().models(multimodal=False))

    @app.post("/get_worker_address")
    async def get_worker_address(body: WorkerAddressRequest) -> WorkerAddressResponse:
        return WorkerAddressResponse(
            address=await registry().choose(body.model, settings.dispatch_method))

    @app.post("/get_worker_addresses")
    async def get_worker_addresses(body: WorkerAddressRequest) -> WorkerAddressesResponse:
        found = await registry().addresses(body.model)
        return WorkerAddressesResponse(addresses=list(found), registrations=found)

    @app.post("/receive_heart_beat")
    async def receive_heart_beat(body: HeartBeatRequest) -> HeartBeatResponse:
        return HeartBeatResponse(exist=await registry().heart_beat(body.worker_name,
                                                                    body.queue_length))

    @app.post("/worker_get_status")
    async def worker_get_status() -> WorkerStatus:
        workers = (await registry().workers()).values()
        names = sorted({m for w in workers for m in w.model_names})
        return WorkerStatus(model_names=names, speed=sum(w.speed for w in workers),
                            queue_length=sum(w.queue_length for w in workers))

    @app.post("/worker_generate_stream")
    async def worker_generate_stream(request: Request) -> StreamingResponse:
        raw = await request.body()
        try:
            model = str(orjson.loads(raw).get("model", ""))
        except (orjson.JSONDecodeError, AttributeError):
            model = ""
        address = await registry().choose(model, settings.dispatch_method) if model else ""

        async def relay() -> AsyncIterator[bytes]:
            if not address:
                yield orjson.dumps({"text": "no worker serves this model",
                                    "error_code": CONTROLLER_NO_WORKER}) + b"\0"
                return
            try:
                async with client().stream("POST", address + "/worker_generate_stream",
                                           content=raw,
                                           headers={"content-type": "application/json"},
                                           timeout=httpx.Timeout(100.0, connect=5.0)) as r:
                    async for data in r.aiter_bytes():
                        yield data
            except httpx.HTTPError:
                yield orjson.dumps({"text": "the worker failed",
                                    "error_code": CONTROLLER_WORKER_TIMEOUT}) + b"\0"

        return StreamingResponse(relay())

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        try:
            await registry().models()
        except (OSError, aioredis.RedisError):
            return Response(orjson.dumps({"status": "unready", "checks": {"redis": False}}),
                            status_code=503, media_type="application/json")
        return _json({"status": "ready", "checks": {"redis": True}})

    @app.get("/test_connection")
    async def test_connection() -> Response:
        return _json("success")

    return app
