"""The worker's HTTP face: FastChat's model-worker protocol, plus controller registration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from workers.chat import ChatModel, GenerateRequest
from workers.embeddings import Embedder

log = logging.getLogger(__name__)
HEART_BEAT_INTERVAL = 15.0
SERVER_ERROR = 50001


@dataclass(kw_only=True)
class WorkerConfig:
    address: str
    controller_url: str | None
    chat_name: str | None = None
    embedding_name: str | None = None
    chat: ChatModel | None = None
    embedder: Embedder | None = None
    concurrency: int = 1
    model_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.model_names = [n for n in (self.chat_name, self.embedding_name) if n]


class Slot:
    """One of the worker's generation slots; released exactly once."""

    def __init__(self, free: Callable[[], None]) -> None:
        self._free: Callable[[], None] | None = free
        self.handed_over = False

    def release(self) -> None:
        free, self._free = self._free, None
        if free is not None:
            free()

    def release_unless_handed_over(self) -> None:
        if not self.handed_over:
            self.release()


def _json(data: object) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _frame(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data) + b"\0"


async def _heart_beats(config: WorkerConfig, status: Any) -> None:
    assert config.controller_url is not None
    url = config.controller_url.rstrip("/")
    async with httpx.AsyncClient(timeout=5) as client:
        registered = False
        while True:
            try:
                if registered:
                    answer = await client.post(url + "/receive_heart_beat", json={
                        "worker_name": config.address, "queue_length": status()})
                    registered = bool(answer.json().get("exist"))
                if not registered:
                    await client.post(url + "/register_worker", json={
                        "worker_name": config.address, "check_heart_beat": True,
                        "worker_status": {"model_names": config.model_names, "speed": 1,
                                          "queue_length": status()}})
                    registered = True
                    log.info("registered %s at %s", config.model_names, url)
            except (httpx.HTTPError, ValueError):
                registered = False
                log.warning("controller %s unreachable; retrying", url)
            await asyncio.sleep(HEART_BEAT_INTERVAL if registered else 2.0)


def _generate_request(params: dict[str, Any], context_length: int) -> GenerateRequest:
    stop = params.get("stop") or []
    return GenerateRequest(
        prompt=str(params["prompt"]),
        max_new_tokens=int(params.get("max_new_tokens") or 256) or context_length,
        temperature=float(params.get("temperature", 1.0)),
        top_p=float(params.get("top_p", 1.0)), top_k=int(params.get("top_k", -1)),
        presence_penalty=float(params.get("presence_penalty", 0.0)),
        frequency_penalty=float(params.get("frequency_penalty", 0.0)),
        repetition_penalty=float(params.get("repetition_penalty") or 1.0),
        stop=[stop] if isinstance(stop, str) else [str(s) for s in stop],
        echo=bool(params.get("echo", True)), logprobs=params.get("logprobs"),
        seed=params.get("seed"))


def create_worker_app(config: WorkerConfig) -> FastAPI:  # noqa: C901 - one handler per route
    semaphore = asyncio.Semaphore(config.concurrency)
    waiting = 0
    running = 0

    def queue_length() -> int:
        return running + waiting

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        beats = (asyncio.create_task(_heart_beats(config, queue_length))
                 if config.controller_url else None)
        try:
            yield
        finally:
            if beats is not None:
                beats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beats

    app = FastAPI(title="mqgate worker", lifespan=lifespan, docs_url=None, redoc_url=None)

    async def admitted() -> Slot:
        nonlocal waiting, running
        waiting += 1
        try:
            await semaphore.acquire()
        finally:
            waiting -= 1
        running += 1

        def free() -> None:
            nonlocal running
            running -= 1
            semaphore.release()

        return Slot(free)

    async def generate(params: dict[str, Any], slot: Slot) -> AsyncIterator[bytes]:
        chat = config.chat
        if chat is None or params.get("model") not in (None, config.chat_name):
            yield _frame({"text": f"model {params.get('model')!r} does not generate text",
                          "error_code": SERVER_ERROR})
            return
        slot.handed_over = True  # from here the generation frees the slot when it stops
        async for frame in chat.frames(_generate_request(params, chat.context_length),
                                       on_exit=slot.release):
            yield _frame(frame)

    @app.post("/worker_generate_stream")
    async def worker_generate_stream(request: Request) -> StreamingResponse:
        params = orjson.loads(await request.body())
        slot = await admitted()
        return StreamingResponse(generate(params, slot),
                                 background=BackgroundTask(slot.release_unless_handed_over))

    @app.post("/worker_generate")
    async def worker_generate(request: Request) -> Response:
        last: bytes = b"{}"
        params = orjson.loads(await request.body())
        slot = await admitted()
        try:
            async for frame in generate(params, slot):
                last = frame.rstrip(b"\0")
        finally:
            slot.release_unless_handed_over()
        return Response(last, media_type="application/json")

    @app.post("/worker_get_embeddings")
    async def worker_get_embeddings(request: Request) -> Response:
        params = orjson.loads(await request.body())
        if config.embedder is None or params.get("model") not in (None, config.embedding_name):
            return _json({"text": f"model {params.get('model')!r} does not embed",
                          "error_code": SERVER_ERROR})
        texts = [str(x) for x in params.get("input") or []]
        vectors, tokens = await asyncio.to_thread(config.embedder.embed, texts)
        return _json({"embedding": vectors, "token_num": tokens})

    @app.post("/worker_get_conv_template")
    async def worker_get_conv_template() -> Response:
        template = config.chat.template.model_dump() if config.chat else {}
        return _json({"conv": template})

    @app.post("/model_details")
    async def model_details() -> Response:
        return _json({"context_length": config.chat.context_length if config.chat else 512})

    @app.post("/count_token")
    async def count_token(request: Request) -> Response:
        params = orjson.loads(await request.body())
        prompt = str(params.get("prompt", ""))
        count = (await asyncio.to_thread(config.chat.count_tokens, prompt) if config.chat
                 else len(prompt.split()))
        return _json({"count": count, "error_code": 0})

    @app.post("/worker_get_status")
    async def worker_get_status() -> Response:
        return _json({"model_names": config.model_names, "speed": 1,
                      "queue_length": queue_length(),
                      "generated_tokens": config.chat.generated_tokens if config.chat else 0})

    return app
