"""Finding workers: the controller client, the model catalog and per-model worker choice."""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts.errors import ControllerUnavailableError, NoWorkerError, WorkerConnectError
from contracts.fastchat import (
    ConvTemplate,
    ModelDetails,
    ModelsResponse,
    WorkerAddressesResponse,
    WorkerAddressResponse,
)
from contracts.settings import Settings
from dispatcher.allowlist import WorkerAllowlist
from dispatcher.cache import Cache
from dispatcher.forwarder import WorkerClient
from dispatcher.lookup import CachedLookup

log = logging.getLogger(__name__)
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

    async def worker_addresses(self, model: str) -> list[str]:
        if self._has_bulk_addresses:
            response = await self._post("/get_worker_addresses", {"model": model})
            if response.status_code == 404:
                self._has_bulk_addresses = False  # a FastChat controller
            else:
                answer = self._parse(response, WorkerAddressesResponse)
                return answer.addresses
        found: list[str] = []
        for _ in range(_SINGLE_ADDRESS_PROBES):
            single = self._parse(await self._post("/get_worker_address", {"model": model}),
                                 WorkerAddressResponse)
            if single.address and single.address not in found:
                found.append(single.address)
        return found

    async def ping(self) -> bool:
        try:
            await self.list_models()
        except ControllerUnavailableError:
            return False
        return True


class ModelCatalog:
    """The served model names, as the controller knows them, cached."""

    def __init__(self, controller: ControllerClient, cache: Cache, settings: Settings) -> None:
        self._controller = controller
        self._lookup: CachedLookup[list[str]] = CachedLookup(
            cache, prefix=settings.topology.redis_key("models", ""),
            adapter=TypeAdapter(list[str]), ttl=settings.cache_ttl,
            max_stale=settings.cache_max_stale)

    async def models(self) -> list[str]:
        return await self._lookup.get("all", self._controller.list_models)

    @property
    def stale(self) -> bool:
        """True while the list is served from cache because the controller is unreachable."""
        return self._lookup.source_failing("all")


class WorkerResolver:
    """Chooses a worker for each call: no controller round trip while the cache is warm."""

    def __init__(self, controller: ControllerClient, workers: WorkerClient, cache: Cache,
                 settings: Settings) -> None:
        topology = settings.topology
        self._controller = controller
        self._workers = workers
        self._unhealthy_ttl = settings.unhealthy_worker_ttl
        self._addresses: CachedLookup[list[str]] = CachedLookup(
            cache, prefix=topology.redis_key("workers", ""), adapter=TypeAdapter(list[str]),
            ttl=settings.cache_ttl, max_stale=settings.cache_max_stale)
        self._templates: CachedLookup[ConvTemplate] = CachedLookup(
            cache, prefix=topology.redis_key("conv", ""), adapter=TypeAdapter(ConvTemplate),
            ttl=settings.template_ttl, max_stale=settings.cache_max_stale)
        self._details: CachedLookup[ModelDetails] = CachedLookup(
            cache, prefix=topology.redis_key("details", ""), adapter=TypeAdapter(ModelDetails),
            ttl=settings.template_ttl, max_stale=settings.cache_max_stale)
        self._unhealthy: dict[str, float] = {}
        self._in_flight: Counter[str] = Counter()
        self._allowlist = WorkerAllowlist(settings.worker_allowlist)

    async def addresses(self, model: str) -> list[str]:
        """Addresses of ``model``'s workers that the allowlist admits (whatever the controller
        or a poisoned cache says)."""
        found = await self._addresses.get(model,
                                          lambda: self._controller.worker_addresses(model))
        allowed = [a for a in found if self._allowlist.allows(a)]
        if len(allowed) < len(found):
            log.warning("ignored %d worker address(es) of %s outside MQGATE_WORKER_ALLOWLIST",
                        len(found) - len(allowed), model)
        return allowed

    async def choose(self, model: str, exclude: set[str]) -> str:
        """The least busy healthy worker of ``model`` not in ``exclude``."""
        addresses = await self.addresses(model)
        now = time.monotonic()
        healthy = [a for a in addresses
                   if a not in exclude and self._unhealthy.get(a, 0.0) <= now]
        if not healthy:
            if exclude:
                raise NoWorkerError(f"no other worker of model {model!r} is reachable")
            if addresses:
                raise NoWorkerError(f"every worker of model {model!r} is unreachable")
            await self._addresses.invalidate(model)
            raise NoWorkerError(f"no worker serves model {model!r}")
        least = min(self._in_flight[a] for a in healthy)
        return random.choice([a for a in healthy if self._in_flight[a] == least])

    @contextmanager
    def lease(self, address: str) -> Iterator[None]:
        self._in_flight[address] += 1
        try:
            yield
        finally:
            self._in_flight[address] -= 1
            if self._in_flight[address] <= 0:
                del self._in_flight[address]

    async def evict(self, model: str, address: str) -> None:
        """Stop using an address that failed to connect, here and for other dispatchers."""
        log.warning("worker %s of model %s is unreachable; evicted", address, model)
        self._unhealthy[address] = time.monotonic() + self._unhealthy_ttl
        await self._addresses.invalidate(model)

    async def template(self, address: str, model: str) -> ConvTemplate:
        return await self._templates.get(f"{address}|{model}",
                                         lambda: self._workers.conv_template(address, model))

    async def context_length(self, address: str, model: str) -> int:
        details = await self._details.get(f"{address}|{model}",
                                          lambda: self._workers.model_details(address, model))
        return details.context_length


__all__ = ["ControllerClient", "ModelCatalog", "WorkerConnectError", "WorkerResolver"]
