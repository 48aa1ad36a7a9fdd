"""Prometheus metrics of an api process, and the middleware that records them."""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("mqgate.access")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter("mqgate_api_requests_total", "HTTP requests, by route, model and status",
                   ["route", "model", "status"])
LATENCY = Histogram("mqgate_api_request_duration_seconds",
                    "Time from request to the end of the response (streams included)",
                    ["route"], buckets=_LATENCY_BUCKETS)
TTFT = Histogram("mqgate_api_time_to_first_token_seconds",
                 "Time from request to the first generated text of a stream", ["route"],
                 buckets=_LATENCY_BUCKETS)
IN_FLIGHT = Gauge("mqgate_api_requests_in_flight", "Requests being answered")
QUEUE_DEPTH = Gauge("mqgate_queue_depth", "Jobs waiting in a model's lane", ["model"])
CANCELLATIONS = Counter("mqgate_api_cancellations_total",
                        "Jobs cancelled before they ended: their client went away "
                        "(client_gone) or the api stopped waiting (given_up)", ["reason"])


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class MetricsMiddleware:
    """Counts every request by route template, model (set by the route) and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        scope.setdefault("state", {})["started"] = started
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, record_status)
        finally:
            IN_FLIGHT.dec()
            route = route_of(scope)
            model = str(scope["state"].get("model", ""))
            seconds = time.monotonic() - started
            REQUESTS.labels(route=route, model=model, status=str(status)).inc()
            LATENCY.labels(route=route).observe(seconds)
            if scope["path"] not in ("/healthz", "/readyz"):
                log.info("%s %s %d %.3fs", scope["method"], route, status, seconds)
