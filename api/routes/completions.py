from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.deps import GatewayDep
from api.jobs import completion_job, parse_body
from api.render import CompletionRenderer
from api.respond import request_schema, respond
from contracts.openai.completions import CompletionRequest

router = APIRouter()


@router.post("/v1/completions", openapi_extra=request_schema(CompletionRequest))
async def create_completion(request: Request, gateway: GatewayDep) -> Response:
    body = await parse_body(request, CompletionRequest)
    job = completion_job(body, timeout=gateway.settings.request_timeout)
    await gateway.check_model(job.model)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    renderer = CompletionRenderer(job, include_usage=include_usage)
    return await respond(request, gateway, job, renderer.complete, renderer)
