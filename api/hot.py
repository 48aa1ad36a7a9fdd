"""The generation routes without the framework's per-request machinery.

Chat completions, completions and embeddings carry nearly all the traffic. For an exact match
of their method and path this innermost middleware calls the route's endpoint itself: no
route search, no dependency solving, no exception middleware around it. The routes stay
declared on the application (the OpenAPI document, every other route), and whatever does not
match goes through the router as before. Errors get OpenAI's shape here, as the application's
own handlers give them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response
from api.gateway import Gateway
from contracts.errors import MqgateError

Endpoint = Callable[[Request, Gateway], Awaitable[Response]]


class HotRoutes:
    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute],
                 endpoints: Collection[Endpoint]) -> None:
        self.app = app
        self._routes = {route.path: route for route in routes
                        if isinstance(route, APIRoute) and route.endpoint in endpoints
                        and "POST" in (route.methods or ())}

    @property
    def paths(self) -> set[str]:
        return set(self._routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (self._routes.get(scope["path"])
                 if scope["type"] == "http" and scope["method"] == "POST" else None)
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # what the router would record, for metrics
        request = Request(scope, receive, send)
        try:
            response: Response = await route.endpoint(request, scope["app"].state.gateway)
        except MqgateError as exc:
            response = error_response(exc)
        await response(scope, receive, send)
