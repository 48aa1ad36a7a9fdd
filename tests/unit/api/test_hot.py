from __future__ import annotations

from typing import Annotated

import httpx
import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import Response

from api.app import create_app
from api.gateway import Gateway
from api.hot import HotRoutes
from contracts.errors import CapacityError
from contracts.settings import Settings


def _not_for_hot_routes() -> Gateway:
    raise AssertionError("dependencies are not solved on a hot route")


Dep = Annotated[Gateway, Depends(_not_for_hot_routes)]


async def fine(request: Request, gateway: Dep) -> Response:
    return Response(orjson.dumps({"gateway": str(gateway), "route": request.scope["route"].path}))


async def full(_request: Request, _gateway: Dep) -> Response:
    raise CapacityError("the job queue is full; retry later")


def _client() -> httpx.AsyncClient:
    router = APIRouter()
    router.post("/fine")(fine)
    router.post("/full")(full)
    app = FastAPI()
    app.include_router(router)
    app.add_middleware(HotRoutes, routes=router.routes, endpoints=(fine, full))
    app.state.gateway = "the gateway"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_hot_route_gets_the_gateway_and_its_route_recorded() -> None:
    async with _client() as client:
        response = await client.post("/fine", json={})
    assert response.status_code == 200
    assert response.json() == {"gateway": "the gateway", "route": "/fine"}


async def test_errors_on_a_hot_route_have_openai_shape() -> None:
    async with _client() as client:
        response = await client.post("/full", json={})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == CapacityError.code


async def test_other_methods_and_paths_go_through_the_router() -> None:
    async with _client() as client:
        assert (await client.get("/fine")).status_code == 405
        assert (await client.post("/elsewhere")).status_code == 404


def test_the_api_serves_its_generation_routes_hot() -> None:
    layer = create_app(Settings()).build_middleware_stack()
    while not isinstance(layer, HotRoutes):
        layer = layer.app  # type: ignore[attr-defined]
    assert layer.paths == {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}
