"""The in-memory cache that ``mqgate serve`` runs on."""

from __future__ import annotations

from discovery.cache import MemoryCache


async def test_keys_never_read_again_do_not_pile_up() -> None:
    cache = MemoryCache(sweep_every=10)
    for i in range(9):
        await cache.set(f"gone-{i}", "1", ttl=-1)  # already expired, never read
    await cache.set("kept", "1", ttl=60)  # the tenth write sweeps
    assert len(cache) == 1
    assert await cache.get("kept") == "1"


async def test_an_expired_value_reads_as_missing() -> None:
    cache = MemoryCache()
    await cache.set("k", "v", ttl=-1)
    assert await cache.get("k") is None
