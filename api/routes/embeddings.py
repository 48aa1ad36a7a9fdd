"""``POST /v1/embeddings`` and FastChat's ``/v1/engines/{model_name}/embeddings``."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from api.endpoints import BodyRoute
from api.gateway import Gateway
from api.jobs import embedding_job, parse_sent
from api.render import embedding_body
from api.respond import respond
from contracts.errors import RequestError
from contracts.openai.embeddings import EmbeddingList, EmbeddingRequest


async def create_embeddings(request: Request, gateway: Gateway) -> Response:
    """The model comes from the body, or else from the path (FastChat's engines route)."""
    body, sent = await parse_sent(request, EmbeddingRequest)
    model = body.model or request.path_params.get("model_name")
    if not model:
        raise RequestError("you must provide a model parameter", param="model")
    job = embedding_job(body, model, timeout=gateway.settings.request_timeout, sent=sent)
    await gateway.check_model(model)
    return await respond(request, gateway, job,
                         partial(embedding_body, job, encoding=body.encoding_format))


ROUTES = [
    BodyRoute(path="/v1/embeddings", endpoint=create_embeddings, body=EmbeddingRequest,
              response=EmbeddingList, summary="Create embeddings"),
    BodyRoute(path="/v1/engines/{model_name}/embeddings", endpoint=create_embeddings,
              body=EmbeddingRequest, response=EmbeddingList,
              summary="Create embeddings (FastChat's engines route)"),
]
