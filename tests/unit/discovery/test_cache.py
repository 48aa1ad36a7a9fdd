"""The in-memory cache that ``mqgate serve`` runs on."""

from __future__ import annotations

from pydantic import TypeAdapter

from contracts.errors import ControllerUnavailableError
from discovery.cache import MemoryCache
from discovery.lookup import CachedLookup


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


async def test_a_superseded_value_is_read_again_yet_kept_while_its_source_fails() -> None:
    lookup: CachedLookup[list[str]] = CachedLookup(
        MemoryCache(), prefix="t:workers:", adapter=TypeAdapter(list[str]), ttl=60,
        max_stale=300)
    answers: list[list[str] | Exception] = [["w1"], ControllerUnavailableError("down"),
                                            ["w1", "w2"]]

    async def load() -> list[str]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await lookup.get("m", load) == ["w1"]
    await lookup.supersede("m")  # a worker registered: read the list again before use
    assert await lookup.get("m", load) == ["w1"]  # the controller fails: the old list serves
    assert await lookup.get("m", load) == ["w1", "w2"]  # and is read again while superseded
    assert answers == []
