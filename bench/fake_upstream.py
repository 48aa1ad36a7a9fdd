"""An OpenAI-compatible server that is as fast as the machine allows, for benchmarks and
tests: what vLLM or llama.cpp's server look like from the gateway, without a model.

A chat answer is ``--tokens`` tokens ("tok0 tok1 ...") ``--delay`` seconds apart, streamed
one chunk each (``stream_options.include_usage`` adds the usage chunk), or whole. Markers in
the last message (or the prompt) change it: ``[[tokens=N]]``, ``[[delay=S]]``,
``[[status=N]]`` answers that status with an OpenAI error, ``[[die-after=N]]`` drops the
connection after N chunks, ``[[error-after=N]]`` sends an error event after N chunks,
``[[refuse]]`` streams a refusal. With ``tools`` the answer is a call of the first tool (or
the one ``tool_choice`` names), its arguments spread over several chunks; ``logprobs`` adds
logprobs; a ``json_schema`` response format gets JSON that has the schema's properties.
``GET /_stats`` says what it saw: requests, streams running (and the most at once), streams
the client closed, the last request's body and its Authorization header.

Run: ``python -m bench.fake_upstream --port 8001 --model fake-upstream``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Json = dict[str, Any]

JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_MARKER = re.compile(r"\[\[([a-z-]+)(?:=([0-9.]+))?\]\]")
FINGERPRINT = "fp_fake"
CREATED = 1_700_000_000


def _markers(text: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2) or 1) for m in _MARKER.finditer(text)}


def _last_text(body: Json) -> str:
    """The text of the last message, or the prompt."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        content = messages[-1].get("content") if isinstance(messages[-1], dict) else None
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content if isinstance(content, str) else ""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def _sample(schema: Any) -> Any:
    """A value of the JSON schema's type (objects get every property)."""
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind == "object":
        return {k: _sample(v) for k, v in (schema.get("properties") or {}).items()}
    return {"string": "fake", "integer": 1, "number": 1.5, "boolean": True,
            "array": []}.get(kind) if isinstance(kind, str) else None


def _tool_call(body: Json) -> tuple[str, str] | None:
    """The name and arguments of the call to make, when the request has tools."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    name = tools[0]["function"]["name"]
    if isinstance(choice, dict):
        name = choice["function"]["name"]
    spec = next(t["function"] for t in tools if t["function"]["name"] == name)
    return name, orjson.dumps(_sample(spec.get("parameters")) or {}).decode()


class Answer:
    """What one request gets, as chunk deltas (chat) or texts (completions)."""

    def __init__(self, body: Json, *, chat: bool, tokens: int) -> None:
        self.body = body
        self.chat = chat
        marks = _markers(_last_text(body))
        self.marks = marks
        self.tokens = int(marks.get("tokens", tokens))
        self.delay = marks.get("delay", 0.0)
        self.n = int(body.get("n") or 1)
        self.call = _tool_call(body) if chat else None
        fmt = body.get("response_format")
        self.schema = (fmt.get("json_schema", {}).get("schema") if isinstance(fmt, dict)
                       and fmt.get("type") == "json_schema" else None)

    def pieces(self) -> list[str]:
        if self.schema is not None:
            text = orjson.dumps(_sample(self.schema)).decode()
            return [text[i:i + 4] for i in range(0, len(text), 4)]
        return [f"tok{i} " for i in range(self.tokens)]

    def deltas(self) -> list[Json]:
        """The chat deltas after the role's, and the finish reason."""
        if self.call is not None:
            name, arguments = self.call
            parts = [arguments[i:i + 5] for i in range(0, len(arguments), 5)] or [""]
            first = {"index": 0, "id": "call_fake0", "type": "function",
                     "function": {"name": name, "arguments": ""}}
            return [{"tool_calls": [first]}, *({"tool_calls": [
                {"index": 0, "function": {"arguments": p}}]} for p in parts)]
        key = "refusal" if "refuse" in self.marks else "content"
        return [{key: p} for p in self.pieces()]

    @property
    def finish(self) -> str:
        return "tool_calls" if self.call is not None else "stop"

    @property
    def plain(self) -> bool:
        """Whether it is the same as every other request of its kind (the bench's)."""
        return not (self.marks or self.call or self.schema is not None or self.n != 1
                    or self.body.get("logprobs"))

    def usage(self) -> Json:
        count = self.n * (len(self.deltas()) if self.chat else len(self.pieces()))
        return {"prompt_tokens": 8, "completion_tokens": count, "total_tokens": 8 + count}

    def logprobs(self, piece: str) -> Json | None:
        if self.chat and self.body.get("logprobs"):
            return {"content": [{"token": piece, "logprob": -0.5, "bytes": list(piece.encode()),
                                 "top_logprobs": []}]}
        if not self.chat and self.body.get("logprobs"):
            return {"tokens": [piece], "token_logprobs": [-0.5], "top_logprobs": [None],
                    "text_offset": [0]}
        return None


class FakeUpstream:
    def __init__(self, *, model: str, tokens: int, delay: float) -> None:
        self.model = model
        self.tokens = tokens
        self.delay = delay
        self.stats: Json = {"requests": 0, "active": 0, "max_active": 0,
                            "closed_by_client": 0, "last": None}
        self._plain: dict[tuple[bool, bool], list[bytes]] = {}

    def events(self, answer: Answer) -> list[bytes]:
        if not answer.plain:
            return _events(answer, self.model)
        options = answer.body.get("stream_options") or {}
        key = (answer.chat, bool(options.get("include_usage")))
        if key not in self._plain:
            self._plain[key] = _events(answer, self.model)
        return self._plain[key]

    async def __call__(self, scope: Json, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"].removeprefix("/v1")
        if path == "/_stats":
            await _respond(send, 200, orjson.dumps(self.stats))
            return
        if path == "/models":
            await _respond(send, 200, orjson.dumps({"object": "list", "data": [
                {"id": self.model, "object": "model", "owned_by": "fake",
                 "max_model_len": 4096}]}))
            return
        body = orjson.loads(raw) if raw else {}
        self.stats["requests"] += 1
        self.stats["last"] = body
        self.stats["authorization"] = dict(scope["headers"]).get(b"authorization",
                                                                 b"").decode()
        if path == "/embeddings":
            await _respond(send, 200, _embeddings(body))
        elif path in ("/chat/completions", "/completions"):
            await self._generate(body, path == "/chat/completions", receive, send)
        else:
            await _respond(send, 404, _error("no such route", "not_found"))

    async def _generate(self, body: Json, chat: bool, receive: Receive, send: Send) -> None:
        answer = Answer(body, chat=chat, tokens=self.tokens)
        status = int(answer.marks.get("status", 200))
        if status != 200:
            await _respond(send, status, _error(f"the fake upstream answers {status}",
                                                "fake_code"))
            return
        if not body.get("stream"):
            await _respond(send, 200, orjson.dumps(_whole(answer, self.model)))
            return
        self.stats["active"] += 1
        self.stats["max_active"] = max(self.stats["max_active"], self.stats["active"])
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE})
            for index, event in enumerate(self.events(answer)):
                if index and (answer.delay or self.delay):
                    await asyncio.sleep(answer.delay or self.delay)
                if gone.is_set():
                    self.stats["closed_by_client"] += 1
                    return
                if index == answer.marks.get("die-after"):
                    raise ConnectionAbortedError("the fake upstream dies mid-stream")
                if index == answer.marks.get("error-after"):
                    event = b"data: " + _error("failed mid-stream", None, kind="server_error")
                    await send({"type": "http.response.body", "body": event + b"\n\n"})
                    break
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
            self.stats["active"] -= 1


def _events(answer: Answer, model: str) -> list[bytes]:
    """The SSE events of a streamed answer, [DONE] last."""
    kind = "chat.completion.chunk" if answer.chat else "text_completion"
    top = {"id": "chatcmpl-fake" if answer.chat else "cmpl-fake", "object": kind,
           "created": CREATED, "model": model, "system_fingerprint": FINGERPRINT}
    chunks: list[Json] = []
    if answer.chat:
        chunks.append({**top, "choices": [{"index": i, "delta": {"role": "assistant",
                                                                "content": ""},
                                           "logprobs": None, "finish_reason": None}
                                          for i in range(answer.n)]})
        steps = [(d, answer.logprobs(d.get("content", ""))) for d in answer.deltas()]
    else:
        steps = [({"text": p}, answer.logprobs(p)) for p in answer.pieces()]
    for delta, logprobs in steps:
        for i in range(answer.n):
            choice = ({"index": i, "delta": delta} if answer.chat else {"index": i, **delta})
            chunks.append({**top, "choices": [{**choice, "logprobs": logprobs,
                                                "finish_reason": None}]})
    for i in range(answer.n):
        end = {"index": i, "delta": {}} if answer.chat else {"index": i, "text": ""}
        chunks.append({**top, "choices": [{**end, "logprobs": None,
                                            "finish_reason": answer.finish}]})
    options = answer.body.get("stream_options") or {}
    if options.get("include_usage"):
        chunks.append({**top, "choices": [], "usage": answer.usage()})
    return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def _whole(answer: Answer, model: str) -> Json:
    text = "".join(answer.pieces())
    message: Json = {"role": "assistant", "content": text}
    if answer.call is not None:
        name, arguments = answer.call
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_fake0", "type": "function",
             "function": {"name": name, "arguments": arguments}}]}
    choices = [({"index": i, "message": message} if answer.chat else {"index": i, "text": text})
               | {"logprobs": None, "finish_reason": answer.finish} for i in range(answer.n)]
    return {"id": "chatcmpl-fake", "object": "chat.completion" if answer.chat
            else "text_completion", "created": CREATED, "model": model,
            "system_fingerprint": FINGERPRINT, "choices": choices, "usage": answer.usage()}


def _embeddings(body: Json) -> bytes:
    inputs = body.get("input")
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs
                                   and isinstance(inputs[0], int)):
        inputs = [inputs]
    size = int(body.get("dimensions") or 8)
    vectors: list[Any] = [[0.125] * size for _ in inputs or []]
    if body.get("encoding_format") == "base64":
        vectors = [base64.b64encode(b"\0\0\0\x3e" * size).decode() for _ in vectors]
    return orjson.dumps({"object": "list", "model": body.get("model"),
                         "data": [{"object": "embedding", "index": i, "embedding": v}
                                  for i, v in enumerate(vectors)],
                         "usage": {"prompt_tokens": 4, "total_tokens": 4}})


def _error(message: str, code: str | None, *, kind: str = "invalid_request_error") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": "messages",
                                   "code": code}})


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON})
    await send({"type": "http.response.body", "body": body})


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", default="fake-upstream")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between tokens")
    args = parser.parse_args()
    app = FakeUpstream(model=args.model, tokens=args.tokens, delay=args.delay)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools", lifespan="on")


if __name__ == "__main__":
    main()
