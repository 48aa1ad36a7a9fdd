"""The worker's HTTP app: FastChat's model-worker routes over a ``Worker``, and, with a
controller, the registration that keeps the worker known to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from workers.admission import Admission
from workers.registration import Registration
from workers.routes import InvalidBodyError, invalid_body, router
from workers.worker import ChatEngine, EmbeddingEngine, Worker


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    address: str  # the URL the controller hands out for this worker
    controller_url: str | None
    chat_name: str | None = None
    embedding_name: str | None = None
    chat: ChatEngine | None = None
    embedder: EmbeddingEngine | None = None
    concurrency: int = 1

    @property
    def model_names(self) -> list[str]:
        return [name for name in (self.chat_name, self.embedding_name) if name]


def create_worker_app(config: WorkerConfig) -> FastAPI:
    worker = Worker(chat=config.chat, chat_name=config.chat_name, embedder=config.embedder,
                    embedding_name=config.embedding_name,
                    admission=Admission(config.concurrency))
    registration = None
    if config.controller_url:
        registration = Registration(config.controller_url, address=config.address,
                                    model_names=worker.model_names,
                                    queue_length=lambda: worker.queue_length)
    return worker_app(worker, registration)


def worker_app(worker: Worker, registration: Registration | None = None) -> FastAPI:
    """The routes over ``worker``; the app's lifespan holds ``registration``, if any."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if registration is not None:
                await stack.enter_async_context(registration)
            yield

    app = FastAPI(title="mqgate worker", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.worker = worker
    app.add_exception_handler(InvalidBodyError, invalid_body)
    app.include_router(router)
    return app
