"""The routes that take a JSON body, served as plain ASGI endpoints.

Chat completions, completions, embeddings and FastChat's two POST extensions carry nearly all
the traffic. Each is an ``Endpoint``: a coroutine of the request and the gateway, with no
framework dependencies to solve. ``BodyRoutes`` is the api's innermost layer: it answers
these paths itself (any other method is a 405), and hands every other path to the router, so
each endpoint has exactly one way in. ``openapi_paths`` documents them from the same request
and response models the endpoints parse and produce.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response
from api.gateway import Gateway
from contracts.errors import MethodNotAllowedError, MqgateError

Endpoint = Callable[[Request, Gateway], Awaitable[Response]]


@dataclass(frozen=True, kw_only=True)
class BodyRoute:
    """One POST route: its path (``{name}`` for a path parameter), endpoint and models."""

    path: str
    endpoint: Endpoint
    body: type[BaseModel]
    response: type[BaseModel] | None = None
    summary: str
    streams: bool = False
    documented: bool = True


class BodyRoutes:
    """ASGI layer serving ``routes``; every other request goes on to ``app``."""

    def __init__(self, app: ASGIApp, routes: Iterable[BodyRoute]) -> None:
        self.app = app
        self._exact: dict[str, BodyRoute] = {}
        self._templated: list[tuple[re.Pattern[str], BodyRoute]] = []
        for route in routes:
            if "{" in route.path:
                self._templated.append((compile_path(route.path)[0], route))
            else:
                self._exact[route.path] = route

    def match(self, path: str) -> tuple[BodyRoute, dict[str, str]] | None:
        if (route := self._exact.get(path)) is not None:
            return route, {}
        for pattern, templated in self._templated:
            if found := pattern.match(path):
                return templated, found.groupdict()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.match(scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        route, params = found
        scope["route"] = route  # what the router would record, for metrics and logs
        scope["path_params"] = params
        response: Response
        if scope["method"] != "POST":
            response = error_response(MethodNotAllowedError("method not allowed on this route"))
            response.headers["Allow"] = "POST"
        else:
            try:
                response = await route.endpoint(Request(scope, receive, send),
                                                 scope["app"].state.gateway)
            except MqgateError as exc:
                response = error_response(exc)
        await response(scope, receive, send)


def _component(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(route: BodyRoute, components: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if route.response is not None:
        content["application/json"] = {"schema": _component(route.response, components)}
    if route.streams:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    error = {"description": "an error in OpenAI's shape", "content": {"application/json": {
        "schema": {"type": "object", "required": ["error"]}}}}
    return {
        "summary": route.summary,
        "operationId": "post" + re.sub(r"\W+", "_", route.path).rstrip("_"),
        "parameters": [{"name": name, "in": "path", "required": True,
                        "schema": {"type": "string"}}
                       for name in re.findall(r"{(\w+)", route.path)],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _component(route.body, components)}}},
        "responses": {"200": {"description": "the answer", "content": content},
                      "default": error},
    }


def add_openapi_paths(document: dict[str, Any], routes: Sequence[BodyRoute]) -> None:
    """Document ``routes`` in an OpenAPI ``document`` in place."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    paths = document.setdefault("paths", {})
    for route in routes:
        if route.documented:
            paths.setdefault(route.path, {})["post"] = _operation(route, components)
