"""Scripted workers and controllers behind httpx.MockTransport."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable

import httpx
import orjson

Handler = Callable[[httpx.Request], httpx.Response]


def frames(*texts: str, finish: str = "stop", usage: tuple[int, int] = (3, 2)) -> bytes:
    out = b""
    for text in texts:
        out += orjson.dumps({"text": text, "error_code": 0, "finish_reason": None}) + b"\0"
    out += orjson.dumps({"text": texts[-1] if texts else "", "error_code": 0,
                         "finish_reason": finish,
                         "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                   "total_tokens": sum(usage)}}) + b"\0"
    return out


class ByteStream(httpx.AsyncByteStream):
    """A response body delivered in the given pieces."""

    def __init__(self, pieces: list[bytes], fail_after: bool = False) -> None:
        self.pieces = pieces
        self.fail_after = fail_after
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.fail_after:
            raise httpx.RemoteProtocolError("peer closed connection")

    async def aclose(self) -> None:
        self.closed = True


class ScriptedWorkers:
    """Answers worker endpoints per address; counts the calls made to each."""

    def __init__(self, *, template: dict[str, object] | None = None,
                 context_length: int = 2048) -> None:
        self.calls: Counter[str] = Counter()
        self.dead: set[str] = set()
        self.bodies: list[dict[str, object]] = []
        self.stream_for: Callable[[str, dict[str, object]], httpx.Response] = (
            lambda _a, _b: httpx.Response(200, stream=ByteStream([frames("he", "hello")])))
        self.template = template or {"name": "t", "system_template": "{system_message}",
                                     "system_message": "", "roles": ["U", "A"],
                                     "messages": [], "offset": 0, "sep_style": 2,
                                     "sep": " ", "sep2": "</s>", "stop_str": None,
                                     "stop_token_ids": None}
        self.context_length = context_length

    def __call__(self, request: httpx.Request) -> httpx.Response:
        address = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        path = request.url.path
        self.calls[f"{address}{path}"] += 1
        if address in self.dead:
            raise httpx.ConnectError("connection refused", request=request)
        body = orjson.loads(request.content) if request.content else {}
        if path == "/worker_generate_stream":
            self.bodies.append(body)
            return self.stream_for(address, body)
        if path == "/worker_get_conv_template":
            return httpx.Response(200, json={"conv": self.template})
        if path == "/model_details":
            return httpx.Response(200, json={"context_length": self.context_length})
        if path == "/count_token":
            return httpx.Response(200, json={"count": len(str(body["prompt"]).split()),
                                             "error_code": 0})
        if path == "/worker_get_embeddings":
            inputs = body["input"]
            assert isinstance(inputs, list)
            return httpx.Response(200, json={"embedding": [[float(len(x))] for x in inputs],
                                             "token_num": len(inputs)})
        return httpx.Response(404)


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
