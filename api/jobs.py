"""From an HTTP body to a validated request, and from a request to a Job."""

from __future__ import annotations

import time
import uuid
from typing import TypeVar

import orjson
from pydantic import BaseModel, JsonValue, ValidationError
from starlette.requests import Request

from api.errors import validation_message
from contracts.errors import RequestError
from contracts.fastchat import WorkerSampling
from contracts.jobs import Job, JobKind, JobMessage, SamplingParams, Tier
from contracts.openai.chat import ChatCompletionRequest
from contracts.openai.completions import CompletionRequest
from contracts.openai.embeddings import EmbeddingRequest

R = TypeVar("R", bound=BaseModel)

_SAMPLING_FIELDS = set(WorkerSampling.model_fields)
_JSON_TYPES = ("application/json", "text/json")


def _check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media not in _JSON_TYPES and not media.endswith("+json"):
        raise RequestError(f"unsupported content type {media!r}; send application/json")


async def parse_body(request: Request, model: type[R]) -> R:
    """Strict JSON (no NaN or Infinity, no coercion of types), or a 400 that says why."""
    return (await parse_sent(request, model))[0]


async def parse_sent(request: Request, model: type[R]) -> tuple[R, dict[str, JsonValue]]:
    """``parse_body``'s request, and the JSON object as the client sent it (unknown fields
    kept), which an OpenAI-compatible upstream is sent."""
    _check_content_type(request)
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"the body is not valid JSON: {exc.args[0] if exc.args else exc}",
                           ) from None
    if not isinstance(data, dict):
        raise RequestError("the body must be a JSON object")
    try:
        return model.model_validate(data), data
    except ValidationError as exc:
        message, param = validation_message(list(exc.errors(include_url=False)))  # type: ignore[arg-type]
        raise RequestError(message, param=param) from None
    except (RecursionError, ValueError) as exc:
        raise RequestError("the body could not be validated") from exc


def new_id() -> str:
    return uuid.uuid4().hex


def _stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _sampling(body: ChatCompletionRequest | CompletionRequest, *,
              max_tokens: int | None) -> SamplingParams:
    """The worker's sampling parameters, taken by name from the request; what the client
    left out keeps the worker's default."""
    given = body.model_dump(include=_SAMPLING_FIELDS, exclude_none=True)
    return SamplingParams.model_validate({**given, "max_tokens": max_tokens,
                                          "stop": _stops(body.stop)})


def _tier(body: ChatCompletionRequest | CompletionRequest) -> Tier:
    tier = body.service_tier
    return Tier.DEFAULT if tier is None or tier == "auto" else Tier(tier)


def _deadline(tier: Tier, timeout: float, flex_timeout: float | None) -> float:
    """``flex`` jobs may wait longer (``MQGATE_FLEX_TIMEOUT``): they run only when nothing
    else of their model waits."""
    if tier is Tier.FLEX and flex_timeout is not None:
        timeout = flex_timeout
    return time.time() + timeout


def chat_job(body: ChatCompletionRequest, *, timeout: float,
             flex_timeout: float | None = None, sent: dict[str, JsonValue] | None = None) -> Job:
    if isinstance(body.messages, str):
        messages, prompts = None, [body.messages]
    else:
        messages = [JobMessage(role=m.role, content=m.text()) for m in body.messages]
        prompts = []
    params = _sampling(body, max_tokens=body.max_completion_tokens or body.max_tokens)
    tier = _tier(body)
    return Job(id=new_id(), kind=JobKind.CHAT, model=body.model, messages=messages,
               prompts=prompts, params=params, n=body.n or 1, stream=bool(body.stream),
               tier=tier, body=sent, deadline=_deadline(tier, timeout, flex_timeout))


def completion_job(body: CompletionRequest, *, timeout: float,
                   flex_timeout: float | None = None,
                   sent: dict[str, JsonValue] | None = None) -> Job:
    params = _sampling(body, max_tokens=16 if body.max_tokens is None else body.max_tokens)
    tier = _tier(body)
    return Job(id=new_id(), kind=JobKind.COMPLETION, model=body.model, prompts=body.prompts(),
               params=params, n=body.n or 1, stream=bool(body.stream), tier=tier, body=sent,
               deadline=_deadline(tier, timeout, flex_timeout))


def embedding_job(body: EmbeddingRequest, model: str, *, timeout: float,
                  sent: dict[str, JsonValue] | None = None) -> Job:
    return Job(id=new_id(), kind=JobKind.EMBEDDING, model=model, prompts=body.inputs(),
               body=sent, deadline=time.time() + timeout)
