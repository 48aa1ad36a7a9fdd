"""A read-through lookup: in-process memo, then the shared cache, then the source.

Concurrent misses for one key share one load; when the source fails, a stale value is served
for up to ``max_stale`` seconds. A load that was under way when something was forgotten is
handed to its callers but not kept, so that what it read before the change is never cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import orjson
from pydantic import TypeAdapter, ValidationError

from contracts.errors import MqgateError
from discovery.cache import Cache
from discovery.metrics import CACHE_LOOKUPS

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    stored_at: float  # wall clock, so the age survives a trip through the shared cache
    value: T


class CachedLookup(Generic[T]):
    def __init__(self, cache: Cache, *, prefix: str, adapter: TypeAdapter[T], ttl: float,
                 max_stale: float) -> None:
        self._cache = cache
        self._prefix = prefix
        self._adapter = adapter
        self._ttl = ttl
        self._max_stale = max_stale
        self._memo: dict[str, _Entry[T]] = {}
        self._loads: dict[str, asyncio.Task[T]] = {}
        self._failing: set[str] = set()
        self._superseded: set[str] = set()  # to be read again before use; kept as a fallback
        self._generation = 0  # bumped by every forget: loads begun before it are not kept
        kind = prefix.rstrip(":").rsplit(":", 1)[-1]
        self._hit = CACHE_LOOKUPS.labels(kind=kind, result="hit")
        self._miss = CACHE_LOOKUPS.labels(kind=kind, result="miss")

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        """The value for ``key``. A stale value (past the TTL, within ``max_stale``) is served
        at once while one refresh runs in the background, so a slow or hung Redis or
        controller never holds requests up; only a key never seen waits for its source."""
        entry = self._memo.get(key)
        if key in self._superseded:
            entry = None  # wait for the source; what was held is its fallback if it fails
        age = time.time() - entry.stored_at if entry is not None else None
        if entry is not None and age is not None and age < self._ttl:
            self._hit.inc()
            return entry.value
        task = self._loads.get(key)
        if task is None:
            task = asyncio.create_task(self._refresh(key, load))
            self._loads[key] = task
            task.add_done_callback(lambda t: self._settle(key, t))
        if entry is not None and age is not None and age < self._ttl + self._max_stale:
            self._hit.inc()
            return entry.value
        return await asyncio.shield(task)

    def _settle(self, key: str, task: asyncio.Task[T]) -> None:
        if self._loads.get(key) is task:
            del self._loads[key]
        if not task.cancelled() and task.exception() is not None:
            log.debug("a background refresh of %s failed", self._prefix)

    def source_failing(self, key: str) -> bool:
        """Whether the last load of ``key`` failed, so that what is served is left over."""
        return key in self._failing

    def peek(self, key: str) -> T | None:
        """What this process holds for ``key``, however old; never loads."""
        entry = self._memo.get(key)
        return None if entry is None else entry.value

    def forget(self, keys: Iterable[str]) -> None:
        """Drop ``keys`` from this process's memo (the shared cache keeps them)."""
        self._generation += 1
        for key in keys:
            self._memo.pop(key, None)
            self._loads.pop(key, None)
            self._superseded.discard(key)

    def held(self) -> list[str]:
        """The keys this process holds or is loading."""
        return [*self._memo, *(k for k in self._loads if k not in self._memo)]

    def forget_all(self) -> None:
        self.forget(self.held())

    async def invalidate(self, key: str) -> None:
        """Drop ``key`` in the shared cache, then here (so that nothing read from the shared
        cache before it was dropped is kept)."""
        await self._cache.delete(self._prefix + key)
        self.forget((key,))

    async def supersede(self, key: str) -> None:
        """What is held for ``key`` changed at its source: drop it in the shared cache, and
        read it again at its next use here, keeping it only to serve if the source fails
        then (a controller whose Redis fails over just as a worker registers)."""
        await self._cache.delete(self._prefix + key)
        self._generation += 1
        self._loads.pop(key, None)
        if key in self._memo:
            self._superseded.add(key)

    async def _refresh(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        generation = self._generation
        shared = None if key in self._superseded else await self._from_cache(key)
        if shared is not None and time.time() - shared.stored_at < self._ttl:
            self._hit.inc()
            if generation == self._generation:
                self._memo[key] = shared
            return shared.value
        self._miss.inc()
        try:
            value = await load()
        except MqgateError:
            self._failing.add(key)
            stale = self._memo.get(key) or shared
            if stale is not None and time.time() - stale.stored_at < self._ttl + self._max_stale:
                log.warning("serving a stale %s entry: its source failed", self._prefix)
                return stale.value
            raise
        self._failing.discard(key)
        if generation != self._generation:
            return value  # something was forgotten meanwhile: this may predate it
        self._superseded.discard(key)
        entry = _Entry(time.time(), value)
        self._memo[key] = entry
        payload = orjson.dumps({"t": entry.stored_at, "v": self._adapter.dump_python(value,
                                                                                    mode="json")})
        await self._cache.set(self._prefix + key, payload.decode(), self._ttl)
        return value

    async def _from_cache(self, key: str) -> _Entry[T] | None:
        raw = await self._cache.get(self._prefix + key)
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
            return _Entry(float(data["t"]), self._adapter.validate_python(data["v"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ValidationError):
            return None
