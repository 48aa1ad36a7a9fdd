"""FastChat's own extensions of the API, kept for its clients (and, unlike FastChat, behind
the API key like every route)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.deps import GatewayDep
from api.jobs import new_id, parse_body
from api.respond import json_response, request_schema
from api.routes.chat import create_chat_completion
from contracts.errors import WorkerError
from contracts.fastchat import (
    TokenCheckItem,
    TokenCheckRequest,
    TokenCheckResponse,
    TokenCheckResult,
)
from contracts.jobs import Job, JobKind

router = APIRouter()

router.add_api_route("/api/v1/chat/completions", create_chat_completion, methods=["POST"],
                     include_in_schema=False)


async def _check(gateway: GatewayDep, item: TokenCheckItem) -> TokenCheckResult:
    await gateway.check_model(item.model)
    job = Job(id=new_id(), kind=JobKind.TOKEN_CHECK, model=item.model, prompts=[item.prompt],
              deadline=time.time() + gateway.settings.request_timeout)
    reader = await gateway.submit(job)
    try:
        final = (await reader.final())[-1]
    finally:
        reader.subscription.close()
    if final.token_count is None:
        raise WorkerError("the worker did not count the prompt's tokens")
    count, context = final.token_count.count, final.token_count.context_length
    return TokenCheckResult(fits=count + item.max_tokens <= context, tokenCount=count,
                            contextLength=context)


@router.post("/api/v1/token_check", openapi_extra=request_schema(TokenCheckRequest))
async def token_check(request: Request, gateway: GatewayDep) -> Response:
    body = await parse_body(request, TokenCheckRequest)
    results = await asyncio.gather(*(_check(gateway, item) for item in body.prompts))
    return json_response(TokenCheckResponse(prompts=list(results)).model_dump_json().encode())
