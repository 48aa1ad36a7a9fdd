from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.responses import Response

from api.deps import GatewayDep
from api.respond import json_response
from contracts.openai.models import Model, ModelList

router = APIRouter()


def _card(name: str, created: int) -> Model:
    return Model(id=name, created=created, root=name)


@router.get("/v1/models")
async def list_models(gateway: GatewayDep) -> Response:
    created = int(time.time())
    names = await gateway.catalog.models()
    return json_response(ModelList(data=[_card(n, created) for n in names])
                         .model_dump_json().encode())


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, gateway: GatewayDep) -> Response:
    await gateway.check_model(model_id)
    return json_response(_card(model_id, int(time.time())).model_dump_json().encode())
