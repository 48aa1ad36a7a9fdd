"""The controller's HTTP face: FastChat's controller protocol, each route a call on the
``Controller`` that owns the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from contracts.settings import Settings
from controller.registry import HashStore
from controller.routes import router
from controller.service import Controller


def create_controller_app(settings: Settings, store: HashStore | None = None) -> FastAPI:
    """The controller; its registry lives in Redis unless ``store`` is given."""
    return controller_app(Controller(settings, store))


def controller_app(controller: Controller) -> FastAPI:
    """The routes over ``controller``, which the app's lifespan opens and closes."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with controller:
            yield

    app = FastAPI(title="mqgate controller", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.controller = controller
    app.include_router(router)
    return app
