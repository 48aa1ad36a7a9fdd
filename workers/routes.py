"""FastChat's model-worker routes, each a call on the app's ``Worker``. Bodies are read into
the models of contracts/fastchat.py; one that does not parse is a 400 with FastChat's error
frame (code 40001), ``\\0``-terminated on the streaming route."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from contracts.fastchat import (
    BundledWorkerStatus,
    CountTokenRequest,
    CountTokenResponse,
    EmbeddingsWorkerRequest,
    ErrorCode,
    GenerateParamsPayload,
    ModelDetails,
)
from workers.worker import Worker, error_frame

M = TypeVar("M", bound=BaseModel)

router = APIRouter()


class InvalidBodyError(Exception):
    """A request body that is not the route's model; ``framed`` on the streaming route."""

    def __init__(self, message: str, *, framed: bool) -> None:
        super().__init__(message)
        self.framed = framed


async def invalid_body(_request: Request, exc: Exception) -> Response:
    """The app's handler of InvalidBodyError."""
    framed = isinstance(exc, InvalidBodyError) and exc.framed
    body = error_frame(ErrorCode.VALIDATION_TYPE_ERROR, str(exc))
    return _json(body + b"\0" if framed else body, status_code=400)


async def _worker(request: Request) -> Worker:
    worker: Worker = request.app.state.worker
    return worker


WorkerDep = Annotated[Worker, Depends(_worker)]


def _json(body: bytes, status_code: int = 200) -> Response:
    return Response(body, status_code=status_code, media_type="application/json")


async def _parse(request: Request, model: type[M], *, framed: bool = False) -> M:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidBodyError(f"{where}: {first['msg']}", framed=framed) from None


@router.post("/worker_generate_stream")
async def worker_generate_stream(request: Request, worker: WorkerDep) -> StreamingResponse:
    generation = await worker.generation(
        await _parse(request, GenerateParamsPayload, framed=True))
    return StreamingResponse(generation, background=BackgroundTask(generation.close))


@router.post("/worker_generate")
async def worker_generate(request: Request, worker: WorkerDep) -> Response:
    generation = await worker.generation(await _parse(request, GenerateParamsPayload))
    try:
        return _json(await generation.last())
    finally:
        generation.close()


@router.post("/worker_get_embeddings")
async def worker_get_embeddings(request: Request, worker: WorkerDep) -> Response:
    answer = await worker.embed(await _parse(request, EmbeddingsWorkerRequest))
    fields = {"text", "error_code"} if answer.error_code else {"embedding", "token_num"}
    return _json(answer.model_dump_json(include=fields).encode())


@router.post("/count_token")
async def count_token(request: Request, worker: WorkerDep) -> CountTokenResponse:
    return await worker.count_tokens(await _parse(request, CountTokenRequest))


@router.post("/worker_get_conv_template")
async def worker_get_conv_template(worker: WorkerDep) -> Response:
    template = worker.conv_template()
    return _json(b'{"conv":{}}' if template is None else template.model_dump_json().encode())


@router.post("/model_details")
async def model_details(worker: WorkerDep) -> ModelDetails:
    return worker.model_details()


@router.post("/worker_get_status")
async def worker_get_status(worker: WorkerDep) -> BundledWorkerStatus:
    return worker.status()
