"""The worker's registration with a controller, kept up by heart beats.

``Registration`` is an async context manager: inside it the worker registers, then sends a
heart beat every ``interval`` seconds with its queue length; a controller that no longer knows
it (it expired, or the controller lost its registry) gets it registered again, and one that
cannot be reached is tried again every ``retry`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self

import httpx
from pydantic import BaseModel, ValidationError

from contracts.fastchat import (
    HeartBeatRequest,
    HeartBeatResponse,
    RegisterWorkerRequest,
    WorkerStatus,
)

log = logging.getLogger(__name__)

HEART_BEAT_INTERVAL = 15.0
RETRY_INTERVAL = 2.0
CONTROLLER_TIMEOUT = 5.0


class Registration:
    def __init__(self, controller_url: str, *, address: str, model_names: list[str],
                 queue_length: Callable[[], int], interval: float = HEART_BEAT_INTERVAL,
                 retry: float = RETRY_INTERVAL,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = controller_url.rstrip("/")
        self._address = address
        self._model_names = model_names
        self._queue_length = queue_length
        self._interval = interval
        self._retry = retry
        self._transport = transport
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        client = httpx.AsyncClient(timeout=CONTROLLER_TIMEOUT, transport=self._transport)
        self._task = asyncio.create_task(self._keep_registered(client))
        self._client = client
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        task, client, self._task, self._client = self._task, self._client, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if client is not None:
            await client.aclose()

    async def _keep_registered(self, client: httpx.AsyncClient) -> None:
        registered = False
        while True:
            registered = await self._round(client, registered=registered)
            await asyncio.sleep(self._interval if registered else self._retry)  # a timer

    async def _round(self, client: httpx.AsyncClient, *, registered: bool) -> bool:
        """One heart beat, or a registration when that is needed; whether it took."""
        try:
            if registered and await self._heart_beat(client):
                return True
            await self._register(client)
        except (httpx.HTTPError, ValidationError):
            log.warning("controller %s unreachable; retrying", self._url)
            return False
        return True

    async def _heart_beat(self, client: httpx.AsyncClient) -> bool:
        answer = await self._post(client, "/receive_heart_beat", HeartBeatRequest(
            worker_name=self._address, queue_length=self._queue_length()))
        return HeartBeatResponse.model_validate_json(answer.content).exist

    async def _register(self, client: httpx.AsyncClient) -> None:
        status = WorkerStatus(model_names=self._model_names, speed=1,
                              queue_length=self._queue_length())
        await self._post(client, "/register_worker", RegisterWorkerRequest(
            worker_name=self._address, check_heart_beat=True, worker_status=status))
        log.info("registered %s at %s", self._model_names, self._url)

    async def _post(self, client: httpx.AsyncClient, path: str,
                    body: BaseModel) -> httpx.Response:
        answer = await client.post(self._url + path, content=body.model_dump_json(),
                                   headers={"content-type": "application/json"})
        answer.raise_for_status()
        return answer
