"""HTTP calls to OpenAI-compatible upstreams over one pooled aiohttp session.

Generation is always streamed, so that closing the stream (a cancel, a deadline) stops the
engine. An upstream's 4xx is the client's problem: it becomes an error with the upstream's
status and error body. A connection that fails, or any other answer than a 200 (a 5xx, a
redirect), before any output is the gateway's: retryable on another entry. A stream that
breaks after output is a stream error.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp
import orjson
from pydantic import JsonValue

from contracts.errors import (
    ErrorDetail,
    MqgateError,
    WorkerConnectError,
    WorkerError,
    WorkerStreamError,
    rejection,
)
from contracts.upstream import UpstreamEntry
from dispatcher.connections import ConnectionPool

log = logging.getLogger(__name__)

DONE = b"[DONE]"
_ERROR_BODY_LIMIT = 65536  # bytes of an error body read


def _text(value: JsonValue) -> str | None:
    return None if value is None else str(value)


def error_detail(raw: bytes, status: int) -> ErrorDetail:
    """An upstream's error body in OpenAI's shape, whichever shape it came in: OpenAI's,
    vLLM's older flat one, TGI's, FastAPI's validation errors, or plain text."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict):
            data = inner
        elif isinstance(inner, str):
            data = {"message": inner, "type": data.get("error_type") or data.get("type")}
        elif "detail" in data and "message" not in data:
            data = {"message": orjson.dumps(data["detail"]).decode()}
        message = data.get("message")
        if message is not None:
            return ErrorDetail(message=str(message),
                               type=_text(data.get("type")) or "invalid_request_error",
                               param=_text(data.get("param")), code=_text(data.get("code")))
    text = raw.decode(errors="replace").strip() or f"the upstream answered {status}"
    return ErrorDetail(message=text[:2000], type="invalid_request_error")


async def _error_body(response: aiohttp.ClientResponse) -> bytes:
    """The first ``_ERROR_BODY_LIMIT`` bytes of an error's body, however many chunks they
    come in (a read returns what has arrived); what came before a failure to read on."""
    raw = bytearray()
    try:
        while len(raw) < _ERROR_BODY_LIMIT and (
                chunk := await response.content.read(_ERROR_BODY_LIMIT - len(raw))):
            raw += chunk
    except (aiohttp.ClientError, TimeoutError):
        pass
    return bytes(raw)


def _failed(entry: UpstreamEntry, status: int, raw: bytes) -> MqgateError:
    """A 4xx is the client's, with the upstream's status; any other answer but a 200 (a 5xx,
    a redirect, which is never followed) is the gateway's."""
    detail = error_detail(raw, status)
    if 400 <= status < 500:
        return rejection(status, detail)
    return WorkerConnectError(f"upstream {entry.api_base} answered {status}: "
                              f"{detail.message}")


def in_stream_error(entry: UpstreamEntry, error: JsonValue, *, output: bool) -> MqgateError:
    """An error event in an upstream's stream: its own 4xx before any output keeps its
    status; anything else fails the stream (or, before output, is retried elsewhere)."""
    raw = orjson.dumps({"error": error})
    detail = error_detail(raw, 500)
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    if output:
        return WorkerStreamError(f"upstream {entry.api_base} failed: {detail.message}")
    if 400 <= status < 500:
        return rejection(status, detail)
    return WorkerConnectError(f"upstream {entry.api_base} failed: {detail.message}")


class UpstreamStream:
    """The events of one streamed response: the data of each, up to ``[DONE]``."""

    def __init__(self, entry: UpstreamEntry, response: aiohttp.ClientResponse) -> None:
        self._entry = entry
        self._response = response
        self.received = False  # whether any event came
        self.done = False  # whether [DONE] came

    async def events(self) -> AsyncIterator[bytes]:
        """Each event's data (its ``data:`` lines joined); comments and other fields are
        skipped. Stops at ``[DONE]``."""
        buffer = bytearray()
        lines: list[bytes] = []
        try:
            async for data in self._response.content.iter_any():
                buffer.extend(data)
                start = 0
                while (end := buffer.find(b"\n", start)) != -1:
                    line = bytes(buffer[start:end]).rstrip(b"\r")
                    start = end + 1
                    if line:
                        if line.startswith(b"data:"):
                            lines.append(line[6:] if line[5:6] == b" " else line[5:])
                        continue
                    if not lines:
                        continue
                    event, lines = b"\n".join(lines), []
                    self.received = True
                    if event == DONE:
                        self.done = True
                        return
                    yield event
                del buffer[:start]
        except (aiohttp.ClientError, TimeoutError) as exc:
            cls = WorkerStreamError if self.received else WorkerConnectError
            raise cls(f"upstream {self._entry.api_base} stream broke: "
                      f"{type(exc).__name__}") from exc
        if lines:  # a last event without its blank line
            event = b"\n".join(lines)
            self.received = True
            if event == DONE:
                self.done = True
            else:
                yield event


class UpstreamClient(ConnectionPool):
    """Talks to upstreams; one instance (one connection pool) per dispatcher process."""

    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(headers={"User-Agent": "mqgate-dispatcher"},
                         connect_timeout=connect_timeout, read_timeout=read_timeout)

    def _timeout(self, entry: UpstreamEntry) -> aiohttp.ClientTimeout:
        read = entry.timeout or self._read_timeout
        return aiohttp.ClientTimeout(total=None, connect=self._connect_timeout,
                                     sock_connect=self._connect_timeout, sock_read=read)

    @staticmethod
    def _headers(entry: UpstreamEntry, key: str | None, *, stream: bool) -> dict[str, str]:
        headers = {**entry.headers, "Content-Type": "application/json",
                   "Accept": "text/event-stream" if stream else "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _open(self, entry: UpstreamEntry, key: str | None, method: str, path: str,
                    body: Mapping[str, JsonValue] | None,
                    stream: bool) -> aiohttp.ClientResponse:
        url = entry.api_base + path
        try:
            response = await self.session.request(
                method, url, data=None if body is None else orjson.dumps(body),
                headers=self._headers(entry, key, stream=stream), allow_redirects=False,
                timeout=self._timeout(entry))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WorkerConnectError(f"upstream {entry.api_base} is unreachable: "
                                     f"{type(exc).__name__}") from exc
        if response.status == 200:
            return response
        try:
            raw = await _error_body(response)
        finally:
            response.close()
        raise _failed(entry, response.status, raw)

    @asynccontextmanager
    async def stream(self, entry: UpstreamEntry, key: str | None, path: str,
                     body: Mapping[str, JsonValue]) -> AsyncIterator[UpstreamStream]:
        """POST ``body`` to ``path`` and read the answer as events; leaving the block early
        closes the connection, which stops the upstream's generation."""
        response = await self._open(entry, key, "POST", path, body, stream=True)
        completed = False
        try:
            yield UpstreamStream(entry, response)
            completed = True
        finally:
            if completed:
                response.release()
            else:
                response.close()

    async def call(self, entry: UpstreamEntry, key: str | None, method: str, path: str,
                   body: Mapping[str, JsonValue] | None = None) -> bytes:
        """The whole body of a call that is not streamed (embeddings, the model list)."""
        response = await self._open(entry, key, method, path, body, stream=False)
        try:
            return await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WorkerError(f"upstream {entry.api_base} failed on {path}: "
                              f"{type(exc).__name__}") from exc
        finally:
            response.release()
