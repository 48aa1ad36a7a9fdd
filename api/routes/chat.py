"""``POST /v1/chat/completions``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.endpoints import BodyRoute
from api.gateway import Gateway
from api.jobs import chat_job, parse_sent
from api.render import ChatRenderer
from api.respond import respond
from contracts.openai.chat import ChatCompletion, ChatCompletionRequest


async def create_chat_completion(request: Request, gateway: Gateway) -> Response:
    body, sent = await parse_sent(request, ChatCompletionRequest)
    job = chat_job(body, sent=sent, timeout=gateway.settings.request_timeout,
                   flex_timeout=gateway.settings.flex_timeout)
    await gateway.check_model(job.model)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    renderer = ChatRenderer(job, include_usage=include_usage)
    return await respond(request, gateway, job, renderer.complete, renderer)


ROUTES = [BodyRoute(path="/v1/chat/completions", endpoint=create_chat_completion,
                    body=ChatCompletionRequest, response=ChatCompletion, streams=True,
                    summary="Create a chat completion")]
