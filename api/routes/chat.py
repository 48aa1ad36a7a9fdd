from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.deps import GatewayDep
from api.jobs import chat_job, parse_body
from api.render import ChatRenderer
from api.respond import request_schema, respond
from contracts.openai.chat import ChatCompletionRequest

router = APIRouter()


@router.post("/v1/chat/completions", openapi_extra=request_schema(ChatCompletionRequest))
async def create_chat_completion(request: Request, gateway: GatewayDep) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    job = chat_job(body, timeout=gateway.settings.request_timeout)
    await gateway.check_model(job.model)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    renderer = ChatRenderer(job, include_usage=include_usage)
    return await respond(request, gateway, job, renderer.complete, renderer)
