"""FastChat's controller routes, each a call on the app's ``Controller``; bodies are the
models of contracts/fastchat.py, and the answers are FastChat controller's bytes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from contracts.fastchat import (
    HeartBeatRequest,
    HeartBeatResponse,
    ModelsResponse,
    RegisterWorkerRequest,
    WorkerAddressesResponse,
    WorkerAddressRequest,
    WorkerAddressResponse,
    WorkerStatus,
)
from contracts.upstream import UpstreamsRequest, UpstreamsResponse
from controller.service import Controller

router = APIRouter()


async def _controller(request: Request) -> Controller:
    controller: Controller = request.app.state.controller
    return controller


ControllerDep = Annotated[Controller, Depends(_controller)]


def _json(body: bytes, status_code: int = 200) -> Response:
    return Response(body, status_code=status_code, media_type="application/json")


@router.post("/register_worker")
async def register_worker(body: RegisterWorkerRequest, controller: ControllerDep) -> Response:
    await controller.register(body)
    return _json(b"null")


@router.post("/receive_heart_beat")
async def receive_heart_beat(body: HeartBeatRequest,
                             controller: ControllerDep) -> HeartBeatResponse:
    return await controller.heart_beat(body)


@router.post("/refresh_all_workers")
async def refresh_all_workers(controller: ControllerDep) -> Response:
    await controller.refresh()
    return _json(b"null")


@router.post("/list_models")
async def list_models(controller: ControllerDep) -> ModelsResponse:
    return await controller.models()


@router.post("/list_multimodal_models")
async def list_multimodal_models(controller: ControllerDep) -> ModelsResponse:
    return await controller.models(multimodal=True)


@router.post("/list_language_models")
async def list_language_models(controller: ControllerDep) -> ModelsResponse:
    return await controller.models(multimodal=False)


@router.post("/get_worker_address")
async def get_worker_address(body: WorkerAddressRequest,
                             controller: ControllerDep) -> WorkerAddressResponse:
    return await controller.worker_address(body)


@router.post("/get_worker_addresses")
async def get_worker_addresses(body: WorkerAddressRequest,
                               controller: ControllerDep) -> WorkerAddressesResponse:
    return await controller.worker_addresses(body)


@router.post("/list_upstreams")
async def list_upstreams(body: UpstreamsRequest, controller: ControllerDep) -> UpstreamsResponse:
    """mqgate's extension: the OpenAI-compatible upstream entries of a model."""
    return controller.upstreams(body)


@router.post("/worker_get_status")
async def worker_get_status(controller: ControllerDep) -> WorkerStatus:
    return await controller.status()


@router.post("/worker_generate_stream")
async def worker_generate_stream(request: Request,
                                 controller: ControllerDep) -> StreamingResponse:
    return StreamingResponse(await controller.relay(await request.body()))


@router.get("/healthz")
async def healthz() -> Response:
    return _json(b'{"status":"ok"}')


@router.get("/readyz")
async def readyz(controller: ControllerDep) -> Response:
    if await controller.ready():
        return _json(b'{"status":"ready","checks":{"redis":true}}')
    return _json(b'{"status":"unready","checks":{"redis":false}}', status_code=503)


@router.get("/test_connection")
async def test_connection() -> Response:
    return _json(b'"success"')
