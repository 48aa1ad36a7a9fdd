"""``create_app(settings)``: the FastAPI application and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from api.auth import ApiKeyMiddleware, BodyLimitMiddleware
from api.endpoints import BodyRoute, BodyRoutes, add_openapi_paths
from api.errors import install_error_handlers
from api.gateway import Gateway
from api.metrics import QUEUE_DEPTH, MetricsMiddleware
from api.routes import chat, completions, embeddings, fastchat, health, models
from consumers.rabbitmq import RabbitJobQueue
from consumers.reply_router import ReplyRouter
from consumers.transport import JobQueue
from contracts.settings import Settings
from discovery.cache import Cache, RedisCache
from discovery.catalog import ModelCatalog
from discovery.controller import ControllerClient
from runtime.redis import redis_client


async def _watch_queue_depth(queue: JobQueue, interval: float = 5.0) -> None:
    """The depth of every lane this api publishes to, for /metrics."""
    while True:
        for model in queue.lanes():
            depth = await queue.depth(model)
            if depth is not None:
                QUEUE_DEPTH.labels(model=model).set(depth)
        await asyncio.sleep(interval)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


BODY_ROUTES: tuple[BodyRoute, ...] = (*chat.ROUTES, *completions.ROUTES, *embeddings.ROUTES,
                                     *fastchat.ROUTES)


class MqgateApi(FastAPI):
    """FastAPI with the body routes in its OpenAPI document: they are served by
    ``BodyRoutes``, not by the router."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            add_openapi_paths(super().openapi(), BODY_ROUTES)
        return super().openapi()


def create_app(settings: Settings, *, queue: JobQueue | None = None,
               cache: Cache | None = None) -> FastAPI:
    """The api. ``queue`` and ``cache`` default to RabbitMQ and Redis; when given, their
    owner starts and stops them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            shared = cache
            if shared is None:
                shared = RedisCache(redis_client(settings, timeout=settings.redis_timeout))
                stack.push_async_callback(shared.aclose)
            controller = ControllerClient(settings.controller_url,
                                          timeout=settings.controller_timeout)
            stack.push_async_callback(controller.aclose)
            jobs = queue
            if jobs is None:
                router = ReplyRouter(settings.reply_buffer)
                jobs = await stack.enter_async_context(RabbitJobQueue(settings, router))
            app.state.cache = shared
            app.state.controller = controller
            gateway = Gateway(settings, jobs, ModelCatalog(controller, shared, settings),
                              shared)
            stack.push_async_callback(gateway.aclose)  # before the queue and cache close
            app.state.gateway = gateway
            poller = asyncio.create_task(_watch_queue_depth(jobs))
            stack.push_async_callback(_cancel, poller)
            yield

    app = MqgateApi(title="mqgate", version="0.1.0", lifespan=lifespan,
                    docs_url=None, redoc_url=None)
    install_error_handlers(app)
    for module in (models, health):
        app.include_router(module.router)
    app.add_middleware(BodyRoutes, routes=BODY_ROUTES)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys)
    app.add_middleware(MetricsMiddleware)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["*"], allow_headers=["*"])
    return app
