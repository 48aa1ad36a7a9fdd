"""HTTP calls to FastChat-protocol model workers over one pooled aiohttp session.

aiohttp's C parser reads a worker's many small stream chunks at a fraction of the CPU of a
pure-Python HTTP stack, and its session keeps connections to each worker alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import aiohttp
import orjson
from pydantic import BaseModel, ValidationError

from contracts.errors import WorkerConnectError, WorkerError, WorkerStreamError
from contracts.fastchat import (
    ConvTemplate,
    ConvTemplateResponse,
    CountTokenResponse,
    EmbeddingsWorkerRequest,
    EmbeddingsWorkerResponse,
    GenerateParams,
    ModelDetails,
    WorkerFrame,
)
from dispatcher.connections import ConnectionPool

log = logging.getLogger(__name__)

_HEADERS = {"User-Agent": "mqgate-dispatcher", "Content-Type": "application/json"}
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError,
                   aiohttp.ServerDisconnectedError)
_DRAIN_SECONDS = 1.0  # how long to read past a final frame so the connection can be reused
M = TypeVar("M", bound=BaseModel)


def split_frames(buffer: bytearray, data: bytes) -> list[bytes]:
    """Append ``data`` to ``buffer`` and return the complete NUL-terminated frames in it."""
    buffer.extend(data)
    frames: list[bytes] = []
    start = 0
    while (end := buffer.find(b"\0", start)) != -1:
        if end > start:
            frames.append(bytes(buffer[start:end]))
        start = end + 1
    del buffer[:start]
    return frames


class WorkerStream:
    """The frames of one ``/worker_generate_stream`` response."""

    def __init__(self, address: str, response: aiohttp.ClientResponse) -> None:
        self._address = address
        self._response = response
        self.received = False

    def __aiter__(self) -> AsyncIterator[WorkerFrame]:
        return self.frames()

    async def frames(self, *, latest_only: bool = False) -> AsyncIterator[WorkerFrame]:
        """Every frame; with ``latest_only`` only the last frame of each read, which is all
        that matters when only the text so far is wanted (frames carry it whole)."""
        buffer = bytearray()
        try:
            async for data in self._response.content.iter_any():
                raws = split_frames(buffer, data)
                for raw in raws[-1:] if latest_only else raws:
                    self.received = True
                    yield WorkerFrame.model_validate_json(raw)
        except ValidationError as exc:
            raise WorkerStreamError(f"worker {self._address} sent a malformed frame") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            cls = WorkerStreamError if self.received else WorkerConnectError
            raise cls(f"worker {self._address} stream broke: {type(exc).__name__}") from exc
        if buffer.strip():
            raise WorkerStreamError(f"worker {self._address} stream ended inside a frame")

    async def drain(self) -> None:
        """Read the rest of the body (a worker ends soon after its final frame), so the
        connection goes back to the pool; give up quickly if it does not end."""
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with asyncio.timeout(_DRAIN_SECONDS):
                async for _ in self._response.content.iter_any():
                    pass


class WorkerClient(ConnectionPool):
    """Talks to workers; one instance (one connection pool) per dispatcher process."""

    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(headers=_HEADERS, connect_timeout=connect_timeout,
                         read_timeout=read_timeout)

    async def _post(self, address: str, path: str, body: object, model: type[M]) -> M:
        try:
            async with self.session.post(address + path, data=orjson.dumps(body),
                                         allow_redirects=False) as response:
                content = await response.read()
                status = response.status
        except _CONNECT_ERRORS as exc:
            raise WorkerConnectError(f"worker {address} is unreachable") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WorkerError(f"worker {address} failed on {path}: {type(exc).__name__}") from exc
        if status >= 500:
            raise WorkerConnectError(f"worker {address} answered {status} on {path}")
        if status != 200:
            raise WorkerError(f"worker {address} answered {status} on {path}")
        try:
            return model.model_validate_json(content)
        except ValidationError as exc:
            raise WorkerError(f"worker {address} sent a malformed answer on {path}") from exc

    async def conv_template(self, address: str, model: str) -> ConvTemplate:
        answer = await self._post(address, "/worker_get_conv_template", {"model": model},
                                  ConvTemplateResponse)
        return answer.conv

    async def model_details(self, address: str, model: str) -> ModelDetails:
        return await self._post(address, "/model_details", {"model": model}, ModelDetails)

    async def count_tokens(self, address: str, model: str, prompt: str) -> int:
        answer = await self._post(address, "/count_token", {"model": model, "prompt": prompt},
                                  CountTokenResponse)
        return answer.count

    async def embeddings(self, address: str, request: EmbeddingsWorkerRequest,
                         ) -> EmbeddingsWorkerResponse:
        answer = await self._post(address, "/worker_get_embeddings", request.model_dump(),
                                  EmbeddingsWorkerResponse)
        if answer.error_code:
            raise WorkerError(f"worker error {answer.error_code}: {answer.text or ''}".strip())
        if answer.embedding is None:
            raise WorkerError(f"worker {address} returned no embeddings")
        return answer

    @asynccontextmanager
    async def generate_stream(self, address: str, params: GenerateParams,
                              ) -> AsyncIterator[WorkerStream]:
        """Open ``/worker_generate_stream``; leaving the block early closes the connection,
        which is what tells the worker to stop generating.

        Raises WorkerConnectError (retryable) when the worker cannot be reached or fails before
        sending a body; errors after that are WorkerStreamError.
        """
        try:
            response = await self.session.post(
                address + "/worker_generate_stream",
                data=orjson.dumps(params.model_dump(exclude_none=True)), allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WorkerConnectError(f"worker {address} is unreachable: "
                                     f"{type(exc).__name__}") from exc
        completed = False
        try:
            if response.status != 200:
                cls = WorkerConnectError if response.status >= 500 else WorkerError
                raise cls(f"worker {address} answered {response.status}")
            yield WorkerStream(address, response)
            completed = True
        finally:
            if completed:
                response.release()
            else:
                response.close()
