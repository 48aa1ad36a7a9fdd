from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from api.deps import GatewayDep

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz")
async def readyz(request: Request, gateway: GatewayDep) -> Response:
    checks = {
        "broker": await gateway.queue.ping(),
        "redis": await request.app.state.cache.ping(),
        "controller": await request.app.state.controller.ping(),
        "dispatchers": await gateway.dispatchers.listening(),
    }
    ready = all(checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "unready", "checks": checks}
    if not checks["dispatchers"]:
        body["reasons"] = {"dispatchers": gateway.dispatchers.why()}
    return Response(orjson.dumps(body), status_code=200 if ready else 503,
                    media_type="application/json")


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
