"""A side port's HTTP app: /healthz, /readyz and /metrics (a dispatcher's, for one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

Check = Callable[[], Awaitable[bool]]


def create_health_app(checks: dict[str, Check]) -> FastAPI:
    app = FastAPI(title="mqgate dispatcher", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        results = {name: await check() for name, check in checks.items()}
        ready = all(results.values())
        return Response(orjson.dumps({"status": "ready" if ready else "unready",
                                      "checks": results}),
                        status_code=200 if ready else 503, media_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
