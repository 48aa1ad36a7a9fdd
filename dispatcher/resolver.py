"""The workers to call for a model: the controller's addresses, read through the caches.

What is cached about a worker (its conversation template, its context length) is keyed by the
worker's address and its registration id, which mqgate's controller hands out with the address
and renews whenever the worker registers: a worker upgraded in place is asked again. The
controller also announces each registration, so every dispatcher forgets the worker's old
entries at once instead of when its cached address list expires. FastChat's controller has no
registration ids; there a worker's entries are dropped when it is found unreachable, or expire.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Set as AbstractSet

from pydantic import TypeAdapter, ValidationError

from contracts.errors import NoWorkerError
from contracts.fastchat import (
    ConvTemplate,
    ModelDetails,
    WorkerRegistered,
)
from contracts.settings import Settings
from discovery.cache import Cache
from discovery.controller import ControllerClient
from discovery.lookup import CachedLookup
from dispatcher.allowlist import WorkerAllowlist
from dispatcher.forwarder import WorkerClient

log = logging.getLogger(__name__)


class WorkerResolver:
    """Finds the workers of a model: no controller round trip while the cache is warm."""

    def __init__(self, controller: ControllerClient, workers: WorkerClient, cache: Cache,
                 settings: Settings) -> None:
        topology = settings.topology
        self._controller = controller
        self._workers = workers
        self._unhealthy_ttl = settings.unhealthy_worker_ttl
        self._cache = cache
        self._channel = topology.registrations_channel
        self._listening = False
        self._addresses: CachedLookup[dict[str, str]] = CachedLookup(
            cache, prefix=topology.redis_key("workers", ""),
            adapter=TypeAdapter(dict[str, str]), ttl=settings.cache_ttl,
            max_stale=settings.cache_max_stale)
        self._templates: CachedLookup[ConvTemplate] = CachedLookup(
            cache, prefix=topology.redis_key("conv", ""), adapter=TypeAdapter(ConvTemplate),
            ttl=settings.template_ttl, max_stale=settings.cache_max_stale)
        self._details: CachedLookup[ModelDetails] = CachedLookup(
            cache, prefix=topology.redis_key("details", ""), adapter=TypeAdapter(ModelDetails),
            ttl=settings.template_ttl, max_stale=settings.cache_max_stale)
        self._unhealthy: dict[str, float] = {}
        self._allowlist = WorkerAllowlist(settings.worker_allowlist)

    async def _registrations(self, model: str) -> dict[str, str]:
        """``model``'s workers and their registration ids, cached."""
        if not self._listening:
            self._listening = True
            self._cache.subscribe(self._channel, self._on_registered, self._on_attached)
        return await self._addresses.get(model,
                                         lambda: self._controller.worker_addresses(model))

    async def _on_registered(self, raw: str) -> None:
        """A worker registered: forget its models' worker lists (here and in the shared
        cache) and whatever this process holds about it."""
        try:
            notice = WorkerRegistered.model_validate_json(raw)
        except ValidationError:
            log.warning("ignored a malformed registration notice")
            return
        log.info("worker %s registered; forgetting what was cached about it",
                 notice.worker_name)
        self._forget_worker(notice.worker_name)
        for model in notice.model_names:
            await self._addresses.supersede(model)

    async def _on_attached(self) -> None:
        """Registration notices may have been missed: re-read the worker lists (they carry
        each worker's current registration id)."""
        self._addresses.forget_all()

    def _forget_worker(self, address: str) -> None:
        prefix = address + "|"
        for lookup in (self._templates, self._details):
            lookup.forget([key for key in lookup.held() if key.startswith(prefix)])

    async def _worker_key(self, address: str, model: str) -> str:
        registration = (await self._registrations(model)).get(address, "")
        return f"{address}|{registration}|{model}"

    async def addresses(self, model: str) -> list[str]:
        """Addresses of ``model``'s workers that the allowlist admits (whatever the controller
        or a poisoned cache says)."""
        found = await self._registrations(model)
        allowed = [a for a in found if self._allowlist.allows(a)]
        if len(allowed) < len(found):
            log.warning("ignored %d worker address(es) of %s outside MQGATE_WORKER_ALLOWLIST",
                        len(found) - len(allowed), model)
        return allowed

    async def candidates(self, model: str, exclude: AbstractSet[str]) -> list[str]:
        """The healthy workers of ``model`` not in ``exclude``, in the order to prefer them
        among equally busy ones: shuffled, so that they share the load."""
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
        random.shuffle(healthy)
        return healthy

    async def evict(self, model: str, address: str) -> None:
        """Stop using an address that failed to connect, here and for other dispatchers. What
        comes back there may be another model build: its template is asked for again."""
        log.warning("worker %s of model %s is unreachable; evicted", address, model)
        self._unhealthy[address] = time.monotonic() + self._unhealthy_ttl
        registration = (self._addresses.peek(model) or {}).get(address, "")
        key = f"{address}|{registration}|{model}"
        self._forget_worker(address)
        for lookup in (self._templates, self._details):
            await lookup.invalidate(key)
        await self._addresses.invalidate(model)

    async def template(self, address: str, model: str) -> ConvTemplate:
        return await self._templates.get(await self._worker_key(address, model),
                                         lambda: self._workers.conv_template(address, model))

    async def context_length(self, address: str, model: str) -> int:
        details = await self._details.get(await self._worker_key(address, model),
                                          lambda: self._workers.model_details(address, model))
        return details.context_length

