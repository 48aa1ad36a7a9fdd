"""The controller's HTTP face: FastChat's controller protocol, each route a call on the
``Controller`` that owns the registry."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from contracts.settings import Settings
from controller.config import UpstreamConfig
from controller.registry import HashStore
from controller.routes import router
from controller.service import Controller


def create_controller_app(settings: Settings, store: HashStore | None = None, *,
                          upstreams: UpstreamConfig | None = None) -> FastAPI:
    """The controller; its registry lives in Redis unless ``store`` is given. Its upstream
    entries are ``upstreams``, else those of the file ``MQGATE_CONFIG`` names, if any."""
    if upstreams is None and settings.config:
        upstreams = UpstreamConfig(settings.config)
    return controller_app(Controller(settings, store, upstreams=upstreams))


@contextlib.contextmanager
def _reload_on_hangup(controller: Controller) -> Iterator[None]:
    """SIGHUP reads the config file again (where this runs in the main thread)."""
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:
        task = loop.create_task(controller.reload_upstreams())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def controller_app(controller: Controller) -> FastAPI:
    """The routes over ``controller``, which the app's lifespan opens and closes."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with controller:
            with _reload_on_hangup(controller):
                yield

    app = FastAPI(title="mqgate controller", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.controller = controller
    app.include_router(router)
    return app
