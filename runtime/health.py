"""A side port's HTTP app: /healthz, /readyz and /metrics (a dispatcher's, for one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

import orjson
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

Check = Callable[[], Awaitable[bool]]


def create_health_app(checks: dict[str, Check], *,
                      ready_when: Collection[str] | None = None) -> FastAPI:
    """``/readyz`` runs every check and reports them all; it answers 200 when those named in
    ``ready_when`` (all of them by default) pass."""
    required = tuple(checks if ready_when is None else ready_when)
    app = FastAPI(title="mqgate dispatcher", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        results = {name: await check() for name, check in checks.items()}
        ready = all(results[name] for name in required)
        return Response(orjson.dumps({"status": "ready" if ready else "unready",
                                      "checks": results, "ready_when": required}),
                        status_code=200 if ready else 503, media_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
