from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from api.deps import GatewayDep
from api.gateway import Gateway
from contracts.errors import MqgateError

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


# what /readyz reports of a check that fails, when no better reason is known
_WHY_NOT = {
    "broker": "no connection to the message broker (reconnecting)",
    "models": "the model list is unknown: the controller does not answer and nothing is cached",
    "redis": "Redis does not answer: lookups go to the controller (served, a little slower)",
    "controller": "the controller does not answer: models and workers come from the cache "
                  "while it lasts (MQGATE_CACHE_MAX_STALE)",
}
READY_WHEN = ("broker", "dispatchers", "models")


@router.get("/readyz")
async def readyz(request: Request, gateway: GatewayDep) -> Response:
    """Ready when this api can accept and answer work: its broker connection is up, a
    dispatcher takes jobs, and the model list can be answered (fresh, or left from before the
    controller went away). Redis and the controller are reported, but take no api out of
    service: requests are still served without them (a load balancer that took every api
    out would turn that into an outage)."""
    checks = {"broker": await gateway.queue.ping(), "models": await _models_known(gateway)}
    checks["dispatchers"], why_not = await gateway.dispatchers_listening()
    checks["redis"] = await request.app.state.cache.ping()
    checks["controller"] = await request.app.state.controller.ping()
    ready = all(checks[name] for name in READY_WHEN)
    body: dict[str, object] = {"status": "ready" if ready else "unready", "checks": checks,
                               "ready_when": READY_WHEN}
    reasons = {name: why_not if name == "dispatchers" else _WHY_NOT[name]
               for name, ok in checks.items() if not ok}
    if reasons:
        body["reasons"] = reasons
    return Response(orjson.dumps(body), status_code=200 if ready else 503,
                    media_type="application/json")


async def _models_known(gateway: Gateway) -> bool:
    try:
        await gateway.catalog.models()
    except MqgateError:
        return False
    return True


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
