"""A deterministic FastChat-protocol model worker for tests.

The output for a prompt is the prompt's words in reverse order, one word a token, cycling,
``tokens`` words at most (default 8, or ``[[tokens=N]]`` in the prompt). Other markers in the
prompt change its behaviour: ``[[delay=S]]`` sleeps S seconds before each token,
``[[die-after=N]]`` drops the connection after N frames, ``[[error]]`` sends an error frame.
``GET /_stats`` tells what the worker saw, so tests can check what reached it (``max_active``:
the most generations it ran at once, counted afresh after ``POST /_stats/max_active/reset``).

Run: ``python -m tests.fakeworker --port 21002 --model fake --controller http://...``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response, StreamingResponse

from contracts.fastchat import ErrorCode

TEMPLATES: dict[str, dict[str, Any]] = {
    "vicuna_v1.1": {
        "name": "vicuna_v1.1", "system_template": "{system_message}",
        "system_message": "A chat between a curious user and an artificial intelligence "
                          "assistant. The assistant gives helpful, detailed, and polite answers "
                          "to the user's questions.",
        "roles": ["USER", "ASSISTANT"], "messages": [], "offset": 0, "sep_style": 2,
        "sep": " ", "sep2": "</s>", "stop_str": None, "stop_token_ids": None},
    "chatml": {
        "name": "chatml", "system_template": "<|im_start|>system\n{system_message}",
        "system_message": "You are a helpful assistant.",
        "roles": ["<|im_start|>user", "<|im_start|>assistant"], "messages": [], "offset": 0,
        "sep_style": 10, "sep": "<|im_end|>", "sep2": None, "stop_str": "<|im_end|>",
        "stop_token_ids": None},
}
DEFAULT_TOKENS = 8
HEART_BEAT_INTERVAL = 2.0  # seconds
EMBEDDING_DIM = 32
_MARKER = re.compile(r"\[\[([a-z-]+)(?:=([0-9.]+))?\]\]")


def markers(prompt: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2) or 1) for m in _MARKER.finditer(prompt)}


def count_tokens(prompt: str) -> int:
    return len(prompt.split()) + 1


def output_tokens(prompt: str, max_new_tokens: int) -> list[str]:
    words = list(reversed(prompt.split())) or ["empty"]
    cap = int(markers(prompt).get("tokens", DEFAULT_TOKENS))
    count = min(cap, max_new_tokens)
    return [(" " if i else "") + words[i % len(words)] for i in range(count)]


def expected_text(prompt: str, max_new_tokens: int = 1 << 20,
                  stop: list[str] | None = None) -> tuple[str, str]:
    """The text and finish_reason this worker produces for ``prompt``."""
    text = ""
    tokens = output_tokens(prompt, max_new_tokens)
    for token in tokens:
        text += token
        cut = min((text.find(s) for s in stop or [] if s and s in text), default=-1)
        if cut != -1:
            return text[:cut], "stop"
    return text, "length" if len(tokens) >= max_new_tokens else "stop"


def embed(text: str) -> list[float]:
    vector = [0.0] * EMBEDDING_DIM
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        vector[digest[0] % EMBEDDING_DIM] += 1.0 if digest[1] % 2 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


@dataclass
class Stats:
    started: int = 0
    completed: int = 0
    aborted: int = 0
    active: int = 0
    max_active: int = 0  # the most generations it ever ran at once
    embeddings: int = 0
    prompts: list[str] = field(default_factory=list)
    last_params: dict[str, Any] = field(default_factory=dict)


def frame(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data) + b"\0"


def create_worker_app(models: list[str], template: str, context_length: int) -> FastAPI:
    app = FastAPI()
    stats = Stats()
    app.state.stats = stats

    async def generate(params: dict[str, Any]) -> AsyncIterator[bytes]:
        prompt = str(params["prompt"])
        flags = markers(prompt)
        max_new = int(params.get("max_new_tokens", 256))
        stops = [s for s in params.get("stop") or [] if s]
        echo = bool(params.get("echo", True))
        usage = {"prompt_tokens": count_tokens(prompt)}
        text = prompt if echo else ""
        tokens = output_tokens(prompt, max_new)
        stats.started += 1
        stats.active += 1
        stats.max_active = max(stats.max_active, stats.active)
        finished = False
        start = len(text)
        reason = "length" if len(tokens) >= max_new else "stop"
        try:
            for i, token in enumerate(tokens):
                if "delay" in flags:
                    await asyncio.sleep(flags["delay"])
                if "die-after" in flags and i >= flags["die-after"]:
                    raise ConnectionAbortedError("fake worker dies mid-stream")
                if "error" in flags and i == 1:
                    yield frame({"text": "**NETWORK ERROR DUE TO HIGH TRAFFIC. PLEASE "
                                 "REGENERATE OR REFRESH THIS PAGE.**\n\n(boom)",
                                 "error_code": ErrorCode.INTERNAL_ERROR})
                    finished = True
                    return
                text += token
                cut = min((text.find(s, start) for s in stops if text.find(s, start) != -1),
                          default=-1)
                if cut != -1:
                    text, reason = text[:cut], "stop"
                    tokens = tokens[:i + 1]
                    break
                chunk: dict[str, Any] = {
                    "text": text, "error_code": 0, "finish_reason": None,
                    "usage": {**usage, "completion_tokens": i + 1,
                              "total_tokens": usage["prompt_tokens"] + i + 1}}
                if params.get("logprobs") is not None:
                    chunk["logprobs"] = {"tokens": tokens[:i + 1],
                                         "token_logprobs": [-0.5] * (i + 1),
                                         "text_offset": [0] * (i + 1),
                                         "top_logprobs": [{}] * (i + 1)}
                yield frame(chunk)
            n = len(tokens)
            yield frame({"text": text, "error_code": 0, "finish_reason": reason,
                         "usage": {**usage, "completion_tokens": n,
                                   "total_tokens": usage["prompt_tokens"] + n}})
            finished = True
        finally:
            stats.active -= 1
            if finished:
                stats.completed += 1
            else:
                stats.aborted += 1

    @app.post("/worker_generate_stream")
    async def worker_generate_stream(request: Request) -> StreamingResponse:
        params = orjson.loads(await request.body())
        stats.last_params = params
        stats.prompts.append(str(params["prompt"]))
        return StreamingResponse(generate(params))

    @app.post("/worker_get_embeddings")
    async def worker_get_embeddings(request: Request) -> Response:
        params = orjson.loads(await request.body())
        stats.embeddings += 1
        inputs = [str(x) for x in params["input"]]
        body = {"embedding": [embed(x) for x in inputs],
                "token_num": sum(count_tokens(x) - 1 for x in inputs)}
        return Response(orjson.dumps(body), media_type="application/json")

    @app.post("/worker_get_conv_template")
    async def worker_get_conv_template() -> Response:
        return Response(orjson.dumps({"conv": TEMPLATES[template]}),
                        media_type="application/json")

    @app.post("/model_details")
    async def model_details() -> Response:
        return Response(orjson.dumps({"context_length": context_length}),
                        media_type="application/json")

    @app.post("/count_token")
    async def count_token(request: Request) -> Response:
        params = orjson.loads(await request.body())
        return Response(orjson.dumps({"count": count_tokens(str(params["prompt"])),
                                      "error_code": 0}), media_type="application/json")

    @app.post("/worker_get_status")
    async def worker_get_status() -> Response:
        return Response(orjson.dumps({"model_names": models, "speed": 1,
                                      "queue_length": stats.active}),
                        media_type="application/json")

    @app.get("/_stats")
    async def get_stats() -> Response:
        return Response(orjson.dumps(stats.__dict__), media_type="application/json")

    @app.post("/_stats/max_active/reset")
    async def reset_max_active() -> Response:
        stats.max_active = stats.active
        return Response(status_code=204)

    return app


def _register(controller: str, address: str, models: list[str], stop: threading.Event) -> None:
    body = {"worker_name": address, "check_heart_beat": True,
            "worker_status": {"model_names": models, "speed": 1, "queue_length": 0}}
    while not stop.is_set():
        # a controller that fails (its Redis in a failover, say) is asked again next beat
        with contextlib.suppress(httpx.HTTPError, ValueError):
            r = httpx.post(controller + "/receive_heart_beat",
                           json={"worker_name": address, "queue_length": 0}, timeout=5)
            r.raise_for_status()
            if not r.json().get("exist"):
                httpx.post(controller + "/register_worker", json=body, timeout=5)
        stop.wait(HEART_BEAT_INTERVAL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--template", default="vicuna_v1.1", choices=sorted(TEMPLATES))
    parser.add_argument("--context-length", type=int, default=2048)
    parser.add_argument("--controller", default=None)
    args = parser.parse_args()
    stop = threading.Event()
    if args.controller:
        address = f"http://{args.host}:{args.port}"
        threading.Thread(target=_register, args=(args.controller, address, args.model, stop),
                         daemon=True).start()
    app = create_worker_app(args.model, args.template, args.context_length)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        stop.set()


if __name__ == "__main__":
    main()
