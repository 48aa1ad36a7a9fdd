"""The served model names, as the controller knows them, read through the caches."""

from __future__ import annotations

from pydantic import TypeAdapter

from contracts.settings import Settings
from discovery.cache import Cache
from discovery.controller import ControllerClient
from discovery.lookup import CachedLookup


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

    async def refresh(self) -> None:
        """Read the list from the controller at the next call (a model came or went), and
        keep the old one only to serve if the controller fails then."""
        await self._lookup.supersede("all")

    @property
    def stale(self) -> bool:
        """True while the list is served from cache because the controller is unreachable."""
        return self._lookup.source_failing("all")
