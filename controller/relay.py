"""The controller as a worker of a parent controller: ``/worker_generate_stream`` relayed to
the worker it picked, as FastChat's controller does, with FastChat's codes when that fails."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from contracts.fastchat import ErrorCode, WorkerFrame

RELAY_TIMEOUT = httpx.Timeout(100.0, connect=5.0)  # FastChat's worker API timeout
_JSON = {"content-type": "application/json"}


def error_frame(code: ErrorCode, text: str) -> bytes:
    """A worker stream's error frame, ``\\0``-terminated: ``{"text": ..., "error_code": ...}``."""
    frame = WorkerFrame(text=text, error_code=code)
    return frame.model_dump_json(exclude_none=True).encode() + b"\0"


async def relay_stream(client: httpx.AsyncClient, address: str,
                       body: bytes) -> AsyncIterator[bytes]:
    """The worker's stream as it comes; an error frame when there is no worker (``address``
    is empty) or the worker fails."""
    if not address:
        yield error_frame(ErrorCode.CONTROLLER_NO_WORKER, "no worker serves this model")
        return
    try:
        async with client.stream("POST", address + "/worker_generate_stream", content=body,
                                 headers=_JSON, timeout=RELAY_TIMEOUT) as response:
            async for data in response.aiter_bytes():
                yield data
    except httpx.HTTPError:
        yield error_frame(ErrorCode.CONTROLLER_WORKER_TIMEOUT, "the worker failed")
