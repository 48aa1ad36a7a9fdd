"""HTTP calls to FastChat-protocol model workers over one pooled client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import httpx
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

log = logging.getLogger(__name__)

_USER_AGENT = "mqgate-dispatcher"
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
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


class WorkerClient:
    """Talks to workers; one instance (one connection pool) per dispatcher process."""

    def __init__(self, *, connect_timeout: float, read_timeout: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            headers={"User-Agent": _USER_AGENT},
            follow_redirects=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, address: str, path: str, body: object, model: type[M]) -> M:
        try:
            response = await self._client.post(address + path, content=orjson.dumps(body),
                                               headers={"content-type": "application/json"})
        except _CONNECT_ERRORS as exc:
            raise WorkerConnectError(f"worker {address} is unreachable") from exc
        except httpx.HTTPError as exc:
            raise WorkerError(f"worker {address} failed on {path}: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise WorkerConnectError(f"worker {address} answered {response.status_code} on {path}")
        if response.status_code != 200:
            raise WorkerError(f"worker {address} answered {response.status_code} on {path}")
        try:
            return model.model_validate_json(response.content)
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
                              ) -> AsyncIterator[AsyncIterator[WorkerFrame]]:
        """Open ``/worker_generate_stream``; leaving the block closes the stream at the worker.

        Raises WorkerConnectError (retryable) when the worker cannot be reached or fails before
        sending a body; errors after that are WorkerStreamError.
        """
        request = self._client.build_request(
            "POST", address + "/worker_generate_stream",
            content=orjson.dumps(params.model_dump(exclude_none=True)),
            headers={"content-type": "application/json"})
        try:
            response = await self._client.send(request, stream=True)
        except _CONNECT_ERRORS as exc:
            raise WorkerConnectError(f"worker {address} is unreachable") from exc
        except httpx.HTTPError as exc:
            raise WorkerConnectError(f"worker {address} failed: {type(exc).__name__}") from exc
        try:
            if response.status_code != 200:
                cls = WorkerConnectError if response.status_code >= 500 else WorkerError
                raise cls(f"worker {address} answered {response.status_code}")
            yield self._frames(address, response)
        finally:
            await response.aclose()

    async def _frames(self, address: str, response: httpx.Response,
                      ) -> AsyncIterator[WorkerFrame]:
        buffer = bytearray()
        received = False
        try:
            async for data in response.aiter_bytes():
                for raw in split_frames(buffer, data):
                    received = True
                    yield WorkerFrame.model_validate_json(raw)
        except ValidationError as exc:
            raise WorkerStreamError(f"worker {address} sent a malformed frame") from exc
        except httpx.HTTPError as exc:
            cls = WorkerStreamError if received else WorkerConnectError
            raise cls(f"worker {address} stream broke: {type(exc).__name__}") from exc
        if buffer.strip():
            raise WorkerStreamError(f"worker {address} stream ended inside a frame")
