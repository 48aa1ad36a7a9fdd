"""Scripted workers (small aiohttp servers on loopback) and a scripted controller."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson
from aiohttp import web


def frames(*texts: str, finish: str = "stop", usage: tuple[int, int] = (3, 2)) -> bytes:
    out = b""
    for text in texts:
        out += orjson.dumps({"text": text, "error_code": 0, "finish_reason": None}) + b"\0"
    out += orjson.dumps({"text": texts[-1] if texts else "", "error_code": 0,
                         "finish_reason": finish,
                         "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                   "total_tokens": sum(usage)}}) + b"\0"
    return out


@dataclass
class Scripted:
    """How a worker answers a stream request: a status, body pieces, maybe a cut connection."""

    pieces: list[bytes] = field(default_factory=lambda: [frames("he", "hello")])
    status: int = 200
    cut: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # between pieces, so that each arrives in a read of its own


def refused_address() -> str:
    """An address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class ScriptedWorkers:
    """Answers worker endpoints; counts calls per address and path."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict[str, object]] = []
        self.stream_for: Callable[[str, dict[str, object]], Scripted] = (
            lambda _a, _b: Scripted())
        self.template: dict[str, object] = {
            "name": "t", "system_template": "{system_message}", "system_message": "",
            "roles": ["U", "A"], "messages": [], "offset": 0, "sep_style": 2, "sep": " ",
            "sep2": "</s>", "stop_str": None, "stop_token_ids": None}
        self.context_length = 2048

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            address = f"http://{request.host}"
            path = request.path
            self.calls[f"{address}{path}"] += 1
            raw = await request.read()
            body = orjson.loads(raw) if raw else {}
            if path == "/worker_generate_stream":
                self.bodies.append(body)
                return await self._stream(request, self.stream_for(address, body))
            if path == "/worker_get_conv_template":
                return web.json_response({"conv": self.template})
            if path == "/model_details":
                return web.json_response({"context_length": self.context_length})
            if path == "/count_token":
                return web.json_response({"count": len(str(body["prompt"]).split()),
                                          "error_code": 0})
            if path == "/worker_get_embeddings":
                inputs = [str(x) for x in body["input"]]
                return web.json_response({"embedding": [[float(len(x))] for x in inputs],
                                          "token_num": len(inputs)})
            return web.Response(status=404)

        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", handle)
        return app

    @staticmethod
    async def _stream(request: web.Request, scripted: Scripted) -> web.StreamResponse:
        if scripted.status != 200:
            return web.Response(status=scripted.status, headers=scripted.headers)
        response = web.StreamResponse()
        await response.prepare(request)
        for i, piece in enumerate(scripted.pieces):
            if i and scripted.delay:
                await asyncio.sleep(scripted.delay)
            await response.write(piece)
        if scripted.cut and request.transport is not None:
            request.transport.close()
            return response
        await response.write_eof()
        return response


class ScriptedController:
    def __init__(self, workers: dict[str, list[str]], *, bulk: bool = True) -> None:
        self.workers = workers
        self.bulk = bulk
        self.calls: Counter[str] = Counter()
        self.down = False
        self._turn = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls[request.url.path] += 1
        if self.down:
            raise httpx.ConnectError("controller down", request=request)
        body = orjson.loads(request.content) if request.content else {}
        if request.url.path == "/list_models":
            return httpx.Response(200, json={"models": sorted(self.workers)})
        if request.url.path == "/get_worker_addresses" and self.bulk:
            return httpx.Response(200, json={"addresses": self.workers.get(body["model"], [])})
        if request.url.path == "/get_worker_address":
            found = self.workers.get(body["model"], [])
            self._turn += 1
            return httpx.Response(200, json={
                "address": found[self._turn % len(found)] if found else ""})
        return httpx.Response(404)
