"""``POST /v1/completions``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.endpoints import BodyRoute
from api.gateway import Gateway
from api.jobs import completion_job, parse_sent
from api.render import CompletionRenderer
from api.respond import respond
from contracts.openai.completions import Completion, CompletionRequest


async def create_completion(request: Request, gateway: Gateway) -> Response:
    body, sent = await parse_sent(request, CompletionRequest)
    job = completion_job(body, sent=sent, timeout=gateway.settings.request_timeout,
                         flex_timeout=gateway.settings.flex_timeout)
    await gateway.check_model(job.model)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    renderer = CompletionRenderer(job, include_usage=include_usage)
    return await respond(request, gateway, job, renderer.complete, renderer)


ROUTES = [BodyRoute(path="/v1/completions", endpoint=create_completion, body=CompletionRequest,
                    response=Completion, streams=True, summary="Create a completion")]
