"""The OpenAI-compatible upstream entries of a model, and which one takes each call.

Entries come from the controller (which reads the config file), read through the caches like
worker addresses; the controller announces a reload of the file as it announces a worker's
registration, and the changed models' entries are forgotten at once. Entries of one model
share its load as LiteLLM's default routing shares it: at random, weighted by ``weight``,
else ``rpm``, else ``tpm``. An entry with ``max_parallel_requests`` takes at most that many
calls at once from this dispatcher (the lanes keep the dispatchers' sum near it); a call that
finds every entry full waits for one to free up. An entry whose api_base did not answer is
skipped for ``MQGATE_UNHEALTHY_WORKER_TTL``, as workers are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from collections.abc import Set as AbstractSet

from pydantic import TypeAdapter, ValidationError

from contracts.errors import NoWorkerError
from contracts.fastchat import WorkerRegistered
from contracts.settings import Settings
from contracts.upstream import UpstreamEntry
from discovery.cache import Cache
from discovery.controller import ControllerClient
from discovery.lookup import CachedLookup
from discovery.upstream_keys import UpstreamKeys
from dispatcher.allowlist import WorkerAllowlist

log = logging.getLogger(__name__)

RECHECK = 1.0  # seconds a call waiting for a free entry goes without looking again
UNBOUNDED_SLOTS = 1_000_000  # what a model with an entry of no parallel limit takes


class UpstreamDirectory:
    def __init__(self, controller: ControllerClient, cache: Cache, settings: Settings,
                 keys: UpstreamKeys) -> None:
        topology = settings.topology
        self._controller = controller
        self._cache = cache
        self._channel = topology.registrations_channel
        self._listening = False
        self._entries: CachedLookup[list[UpstreamEntry]] = CachedLookup(
            cache, prefix=topology.redis_key("upstreams", ""),
            adapter=TypeAdapter(list[UpstreamEntry]), ttl=settings.cache_ttl,
            max_stale=settings.cache_max_stale)
        self._allowlist = WorkerAllowlist(settings.worker_allowlist)
        self._unhealthy_ttl = settings.unhealthy_worker_ttl
        self._unhealthy: dict[str, float] = {}  # api_base -> skipped until
        self._in_flight: Counter[str] = Counter()  # entry id -> calls from this dispatcher
        self._freed = asyncio.Event()
        self.keys = keys

    # --- which entries --------------------------------------------------------------------

    async def entries(self, model: str) -> list[UpstreamEntry]:
        """``model``'s upstream entries that the allowlist admits; none for a model that
        FastChat workers serve."""
        if not self._listening:
            self._listening = True
            self._cache.subscribe(self._channel, self._on_changed, self._on_attached)
        found = await self._entries.get(model, lambda: self._controller.upstreams(model))
        if not found:
            return found
        allowed = [e for e in found if self._allowlist.allows(e.api_base)]
        if len(allowed) < len(found):
            log.warning("ignored %d upstream(s) of %s outside MQGATE_WORKER_ALLOWLIST",
                        len(found) - len(allowed), model)
        return allowed

    async def slots(self, model: str) -> int | None:
        """How many calls ``model``'s entries take at once (None: the model has none)."""
        entries = await self.entries(model)
        if not entries:
            return None
        if any(e.max_parallel_requests is None for e in entries):
            return UNBOUNDED_SLOTS
        return sum(e.max_parallel_requests or 0 for e in entries)

    async def _on_changed(self, raw: str) -> None:
        try:
            notice = WorkerRegistered.model_validate_json(raw)
        except ValidationError:
            return
        for model in notice.model_names:
            await self._entries.supersede(model)

    async def _on_attached(self) -> None:
        self._entries.forget_all()

    # --- taking one -----------------------------------------------------------------------

    def _healthy(self, entries: list[UpstreamEntry], exclude: AbstractSet[str],
                 model: str) -> list[UpstreamEntry]:
        now = time.monotonic()
        healthy = [e for e in entries
                   if e.id not in exclude and self._unhealthy.get(e.api_base, 0.0) <= now]
        if not healthy:
            if exclude:
                raise NoWorkerError(f"no other upstream of model {model!r} is reachable")
            raise NoWorkerError(f"every upstream of model {model!r} is unreachable")
        return healthy

    def _free(self, entries: list[UpstreamEntry]) -> list[UpstreamEntry]:
        return [e for e in entries if e.max_parallel_requests is None
                or self._in_flight[e.id] < e.max_parallel_requests]

    @contextlib.asynccontextmanager
    async def slot(self, model: str, exclude: AbstractSet[str]) -> AsyncIterator[UpstreamEntry]:
        """An entry of ``model`` not in ``exclude`` (ids), held for the block: waited for
        while every one is at its ``max_parallel_requests``."""
        while True:
            freed = self._freed
            entries = self._healthy(await self.entries(model), exclude, model)
            free = self._free(entries)
            if free:
                entry = random.choices(free, weights=[e.share for e in free])[0]
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECHECK):
                    await freed.wait()
        self._in_flight[entry.id] += 1
        try:
            yield entry
        finally:
            self._in_flight[entry.id] -= 1
            if self._in_flight[entry.id] <= 0:
                del self._in_flight[entry.id]
            self._freed.set()
            self._freed = asyncio.Event()

    def unreachable(self, entry: UpstreamEntry) -> None:
        """Skip ``entry``'s api_base for a while: it did not answer."""
        log.warning("upstream %s of model %s is unreachable; skipped for %.0fs",
                    entry.api_base, entry.model_name, self._unhealthy_ttl)
        self._unhealthy[entry.api_base] = time.monotonic() + self._unhealthy_ttl


def slots_with_upstreams(directory: UpstreamDirectory,
                         worker_slots: Callable[[str], Awaitable[int]],
                         ) -> Callable[[str], Awaitable[int]]:
    """How many calls a model takes at once: its upstream entries', or its workers'."""

    async def slots(model: str) -> int:
        upstream = await directory.slots(model)
        return upstream if upstream is not None else await worker_slots(model)

    return slots
