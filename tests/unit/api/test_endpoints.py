"""The body routes: one way in for each endpoint, errors in OpenAI's shape, documented."""

from __future__ import annotations

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from api.app import BODY_ROUTES, create_app
from api.endpoints import BodyRoute, BodyRoutes
from api.gateway import Gateway
from contracts.errors import CapacityError
from contracts.openai.embeddings import EmbeddingRequest
from contracts.settings import Settings


async def echo(request: Request, gateway: Gateway) -> Response:
    return Response(orjson.dumps({"gateway": str(gateway), "route": request.scope["route"].path,
                                  "params": request.path_params}))


async def full(_request: Request, _gateway: Gateway) -> Response:
    raise CapacityError("the job queue is full; retry later")


ROUTES = (BodyRoute(path="/echo", endpoint=echo, body=EmbeddingRequest, summary="echo"),
          BodyRoute(path="/things/{name}/echo", endpoint=echo, body=EmbeddingRequest,
                    summary="echo"),
          BodyRoute(path="/full", endpoint=full, body=EmbeddingRequest, summary="full"))


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()

    @app.get("/elsewhere")
    async def elsewhere() -> dict[str, str]:
        return {"via": "router"}

    app.add_middleware(BodyRoutes, routes=ROUTES)
    app.state.gateway = "the gateway"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_an_endpoint_gets_the_gateway_and_its_route_recorded(
        client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={})
    assert response.status_code == 200
    assert response.json() == {"gateway": "the gateway", "route": "/echo", "params": {}}


async def test_path_parameters_reach_the_endpoint(client: httpx.AsyncClient) -> None:
    response = await client.post("/things/abc/echo", json={})
    assert response.json()["params"] == {"name": "abc"}
    assert response.json()["route"] == "/things/{name}/echo"


async def test_errors_have_openai_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/full", json={})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == CapacityError.code


async def test_another_method_is_a_405_in_openai_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/echo")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_other_paths_go_through_the_router(client: httpx.AsyncClient) -> None:
    assert (await client.get("/elsewhere")).json() == {"via": "router"}
    assert (await client.post("/nowhere")).status_code == 404


def test_no_body_route_is_also_on_the_router() -> None:
    app = create_app(Settings())
    body_paths = {route.path for route in BODY_ROUTES}
    routed = {route.path for route in app.routes if isinstance(route, APIRoute)}
    assert body_paths.isdisjoint(routed)
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings",
            "/v1/engines/{model_name}/embeddings", "/api/v1/chat/completions",
            "/api/v1/token_check"} <= body_paths


def test_the_openapi_document_describes_each_body_from_its_model() -> None:
    document = create_app(Settings()).openapi()
    schemas = document["components"]["schemas"]
    for route in BODY_ROUTES:
        if not route.documented:
            assert route.path not in document["paths"]
            continue
        operation = document["paths"][route.path]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        assert name == route.body.__name__
        assert schemas[name]["properties"].keys() == route.body.model_json_schema()[
            "properties"].keys()
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    engines = document["paths"]["/v1/engines/{model_name}/embeddings"]["post"]
    assert engines["parameters"][0]["name"] == "model_name"
