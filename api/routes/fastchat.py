"""FastChat's own extensions of the API, kept for its clients (and, unlike FastChat, behind
the API key like every route)."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import Response

from api.endpoints import BodyRoute
from api.gateway import Gateway
from api.jobs import new_id, parse_body
from api.respond import json_response
from api.routes.chat import create_chat_completion
from contracts.errors import WorkerError
from contracts.fastchat import (
    TokenCheckItem,
    TokenCheckRequest,
    TokenCheckResponse,
    TokenCheckResult,
)
from contracts.jobs import Job, JobKind
from contracts.openai.chat import ChatCompletionRequest


async def _check(gateway: Gateway, item: TokenCheckItem) -> TokenCheckResult:
    await gateway.check_model(item.model)
    job = Job(id=new_id(), kind=JobKind.TOKEN_CHECK, model=item.model, prompts=[item.prompt],
              deadline=time.time() + gateway.settings.request_timeout)
    with await gateway.submit(job) as reader:
        final = (await reader.final())[-1]
    if final.token_count is None:
        raise WorkerError("the worker did not count the prompt's tokens")
    count, context = final.token_count.count, final.token_count.context_length
    return TokenCheckResult(fits=count + item.max_tokens <= context, tokenCount=count,
                            contextLength=context)


async def token_check(request: Request, gateway: Gateway) -> Response:
    body = await parse_body(request, TokenCheckRequest)
    results = await asyncio.gather(*(_check(gateway, item) for item in body.prompts))
    return json_response(TokenCheckResponse(prompts=list(results)).model_dump_json().encode())


ROUTES = [
    BodyRoute(path="/api/v1/chat/completions", endpoint=create_chat_completion,
              body=ChatCompletionRequest, summary="FastChat's chat completions path",
              documented=False),
    BodyRoute(path="/api/v1/token_check", endpoint=token_check, body=TokenCheckRequest,
              response=TokenCheckResponse, summary="Whether prompts fit the model's context"),
]
