"""A FastChat-protocol worker that is as fast as the machine allows, for benchmarks.

Every generation is ``--tokens`` tokens ("tok0 tok1 ..."), one frame each, ``--delay`` seconds
apart; embeddings are fixed 384-dimensional vectors. It registers with a controller (mqgate's
or FastChat's) and sends heart beats.

Run: ``python -m bench.fake_worker --port 21002 --controller http://127.0.0.1:21001``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import uvicorn

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CONV = {"name": "vicuna_v1.1", "system_template": "{system_message}",
        "system_message": "A chat between a curious user and an assistant.",
        "roles": ["USER", "ASSISTANT"], "messages": [], "offset": 0, "sep_style": 2,
        "sep": " ", "sep2": "</s>", "stop_str": None, "stop_token_ids": None}
EMBEDDING = [0.05] * 384
JSON = [(b"content-type", b"application/json")]


class FakeWorker:
    def __init__(self, *, model: str, tokens: int, delay: float, address: str,
                 controller: str | None) -> None:
        self.model = model
        self.tokens = tokens
        self.delay = delay
        self.address = address
        self.controller = controller
        self.active = 0
        words = [f"tok{i} " for i in range(tokens)]
        cumulative = ["".join(words[:i + 1]) for i in range(tokens)]
        usage = {"prompt_tokens": 8}
        self.frames = [orjson.dumps({"text": text, "error_code": 0, "finish_reason": None,
                                     "usage": {**usage, "completion_tokens": i + 1,
                                               "total_tokens": 9 + i}}) + b"\0"
                       for i, text in enumerate(cumulative)]
        self.final = orjson.dumps({"text": cumulative[-1] if cumulative else "",
                                   "error_code": 0, "finish_reason": "length",
                                   "usage": {**usage, "completion_tokens": tokens,
                                             "total_tokens": 8 + tokens}})

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/worker_generate_stream":
            await self._stream(send)
            return
        answer = self._answer(path, body)
        if answer is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await self._json(send, answer)

    def _answer(self, path: str, body: bytes) -> bytes | None:
        if path == "/worker_get_embeddings":
            count = len(orjson.loads(body).get("input") or [])
            return orjson.dumps({"embedding": [EMBEDDING] * count, "token_num": 4 * count})
        fixed = {"/worker_generate": self.final,
                 "/worker_get_conv_template": orjson.dumps({"conv": CONV}),
                 "/model_details": b'{"context_length": 4096}',
                 "/count_token": b'{"count": 8, "error_code": 0}',
                 "/worker_get_status": self._status()}
        return fixed.get(path)

    def _status(self) -> bytes:
        return orjson.dumps({"model_names": [self.model], "speed": 1,
                             "queue_length": self.active})

    @staticmethod
    async def _json(send: Send, body: bytes) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": JSON})
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, send: Send) -> None:
        self.active += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for frame in self.frames:
                if self.delay:
                    await asyncio.sleep(self.delay)
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": self.final + b"\0"})
        finally:
            self.active -= 1

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        beats: asyncio.Task[None] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.controller:
                    beats = asyncio.create_task(self._heart_beats())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if beats is not None:
                    beats.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _heart_beats(self) -> None:
        assert self.controller is not None
        body = {"worker_name": self.address, "check_heart_beat": True,
                "worker_status": orjson.loads(self._status())}
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(self.controller + "/register_worker", json=body)
                await asyncio.sleep(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=21002)
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument("--controller", default=None)
    args = parser.parse_args()
    worker = FakeWorker(model=args.model, tokens=args.tokens, delay=args.delay,
                        address=f"http://{args.host}:{args.port}", controller=args.controller)
    uvicorn.run(worker, host=args.host, port=args.port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools", lifespan="on")


if __name__ == "__main__":
    main()
