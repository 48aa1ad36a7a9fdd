"""The controller client: FastChat's controller protocol, with mqgate's bulk-address extension
when the controller has it."""

from __future__ import annotations

from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from contracts.errors import ControllerUnavailableError
from contracts.fastchat import (
    ModelsResponse,
    WorkerAddressesResponse,
    WorkerAddressResponse,
)
from contracts.upstream import UpstreamEntry, UpstreamsResponse

M = TypeVar("M", bound=BaseModel)

# FastChat's controller hands out one address per call; this many calls find the others.
_SINGLE_ADDRESS_PROBES = 4


class ControllerClient:
    def __init__(self, url: str, *, timeout: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                         transport=transport)
        self._has_bulk_addresses = True
        self._has_upstreams = True

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, path: str, body: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = await self._client.post(self._url + path, json=body)
        except httpx.HTTPError as exc:
            raise ControllerUnavailableError("the controller is unreachable") from exc
        if response.status_code >= 500:
            raise ControllerUnavailableError(f"the controller answered {response.status_code}")
        return response

    @staticmethod
    def _parse(response: httpx.Response, model: type[M]) -> M:
        if response.status_code != 200:
            raise ControllerUnavailableError(f"the controller answered {response.status_code}")
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ControllerUnavailableError("the controller sent a malformed answer") from exc

    async def list_models(self) -> list[str]:
        answer = self._parse(await self._post("/list_models"), ModelsResponse)
        return sorted(set(answer.models))

    async def worker_addresses(self, model: str) -> dict[str, str]:
        """The workers of ``model``, each with its registration id ("" when the controller
        keeps none, as FastChat's does not)."""
        if self._has_bulk_addresses:
            response = await self._post("/get_worker_addresses", {"model": model})
            if response.status_code == 404:
                self._has_bulk_addresses = False  # a FastChat controller
            else:
                answer = self._parse(response, WorkerAddressesResponse)
                return {a: answer.registrations.get(a, "") for a in answer.addresses}
        found: dict[str, str] = {}
        for _ in range(_SINGLE_ADDRESS_PROBES):
            single = self._parse(await self._post("/get_worker_address", {"model": model}),
                                 WorkerAddressResponse)
            if single.address:
                found.setdefault(single.address, "")
        return found

    async def upstreams(self, model: str) -> list[UpstreamEntry]:
        """The OpenAI-compatible upstream entries of ``model`` (none from FastChat's
        controller, which has no such route)."""
        if not self._has_upstreams:
            return []
        response = await self._post("/list_upstreams", {"model": model})
        if response.status_code == 404:
            self._has_upstreams = False
            return []
        return self._parse(response, UpstreamsResponse).entries

    async def ping(self) -> bool:
        try:
            await self.list_models()
        except ControllerUnavailableError:
            return False
        return True
