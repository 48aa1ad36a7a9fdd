from __future__ import annotations

import httpx
import pytest

from contracts.errors import ControllerUnavailableError, NoWorkerError
from contracts.settings import Settings
from dispatcher.cache import MemoryCache
from dispatcher.forwarder import WorkerClient
from dispatcher.resolver import ControllerClient, ModelCatalog, WorkerResolver
from tests.unit.dispatcher.fakes import ScriptedController

W1, W2 = "http://w1:1", "http://w2:2"


def make(controller: ScriptedController, **overrides: float) -> tuple[WorkerResolver,
                                                                      ModelCatalog]:
    settings = Settings(namespace="unit", **overrides)  # type: ignore[arg-type]
    client = ControllerClient("http://c", timeout=1, transport=httpx.MockTransport(controller))
    workers = WorkerClient(connect_timeout=1, read_timeout=1)
    cache = MemoryCache()
    return (WorkerResolver(client, workers, cache, settings),
            ModelCatalog(client, cache, settings))


async def test_steady_state_makes_no_controller_calls() -> None:
    controller = ScriptedController({"m": [W1, W2]})
    resolver, catalog = make(controller)
    for _ in range(50):
        assert await resolver.choose("m", set()) in (W1, W2)
        assert await catalog.models() == ["m"]
    assert controller.calls["/get_worker_addresses"] == 1
    assert controller.calls["/list_models"] == 1


async def test_load_goes_to_the_least_busy_worker() -> None:
    resolver, _ = make(ScriptedController({"m": [W1, W2]}))
    first = await resolver.choose("m", set())
    with resolver.lease(first):
        assert await resolver.choose("m", set()) != first


async def test_evicted_worker_is_not_chosen_again() -> None:
    controller = ScriptedController({"m": [W1, W2]})
    resolver, _ = make(controller)
    await resolver.evict("m", W1)
    assert {await resolver.choose("m", set()) for _ in range(20)} == {W2}
    with pytest.raises(NoWorkerError):
        await resolver.choose("m", {W2})


async def test_unknown_model_has_no_worker() -> None:
    resolver, _ = make(ScriptedController({"m": [W1]}))
    with pytest.raises(NoWorkerError):
        await resolver.choose("other", set())


async def test_stale_addresses_serve_while_the_controller_is_down() -> None:
    controller = ScriptedController({"m": [W1]})
    resolver, catalog = make(controller, cache_ttl=0.01, cache_max_stale=60)
    assert await resolver.choose("m", set()) == W1
    assert await catalog.models() == ["m"]
    controller.down = True
    import asyncio

    await asyncio.sleep(0.02)
    assert await resolver.choose("m", set()) == W1
    assert await catalog.models() == ["m"]


async def test_controller_down_with_a_cold_cache_is_unavailable() -> None:
    controller = ScriptedController({"m": [W1]})
    controller.down = True
    resolver, catalog = make(controller)
    with pytest.raises(ControllerUnavailableError):
        await catalog.models()
    with pytest.raises(ControllerUnavailableError):
        await resolver.choose("m", set())


async def test_fastchat_controller_without_the_bulk_route() -> None:
    controller = ScriptedController({"m": [W1, W2]}, bulk=False)
    resolver, _ = make(controller)
    assert sorted(await resolver.addresses("m")) == [W1, W2]
    assert controller.calls["/get_worker_addresses"] == 1


async def test_addresses_outside_the_allowlist_are_never_used() -> None:
    controller = ScriptedController({"m": ["http://169.254.169.254:80", W1]})
    settings = Settings(namespace="unit", worker_allowlist=["w1"])
    client = ControllerClient("http://c", timeout=1, transport=httpx.MockTransport(controller))
    workers = WorkerClient(connect_timeout=1, read_timeout=1)
    resolver = WorkerResolver(client, workers, MemoryCache(), settings)
    assert {await resolver.choose("m", set()) for _ in range(10)} == {W1}
    controller.workers["m"] = ["http://169.254.169.254:80"]
    poisoned = WorkerResolver(client, workers, MemoryCache(), settings)
    with pytest.raises(NoWorkerError):
        await poisoned.choose("m", set())
