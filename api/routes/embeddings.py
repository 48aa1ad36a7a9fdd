from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.deps import GatewayDep
from api.jobs import embedding_job, parse_body
from api.render import embedding_body
from api.respond import request_schema, respond
from contracts.errors import RequestError
from contracts.openai.embeddings import EmbeddingRequest

router = APIRouter()


async def _embed(request: Request, gateway: GatewayDep, path_model: str | None) -> Response:
    body = await parse_body(request, EmbeddingRequest)
    model = body.model or path_model
    if not model:
        raise RequestError("you must provide a model parameter", param="model")
    job = embedding_job(body, model, timeout=gateway.settings.request_timeout)
    await gateway.check_model(model)
    return await respond(request, gateway, job,
                         partial(embedding_body, job, encoding=body.encoding_format))


@router.post("/v1/embeddings", openapi_extra=request_schema(EmbeddingRequest))
async def create_embeddings(request: Request, gateway: GatewayDep) -> Response:
    return await _embed(request, gateway, None)


@router.post("/v1/engines/{model_name}/embeddings",
             openapi_extra=request_schema(EmbeddingRequest))
async def create_engine_embeddings(model_name: str, request: Request,
                                   gateway: GatewayDep) -> Response:
    return await _embed(request, gateway, model_name)
