from __future__ import annotations

from typing import cast

import httpx
import pytest

from contracts.errors import ControllerUnavailableError, NoWorkerError
from contracts.fastchat import ConvTemplate, ModelDetails, WorkerRegistered
from contracts.settings import Settings
from contracts.topology import Topology
from discovery.cache import MemoryCache
from discovery.catalog import ModelCatalog
from discovery.controller import ControllerClient
from dispatcher.forwarder import WorkerClient
from dispatcher.resolver import WorkerResolver
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
        assert sorted(await resolver.candidates("m", set())) == [W1, W2]
        assert await catalog.models() == ["m"]
    assert controller.calls["/get_worker_addresses"] == 1
    assert controller.calls["/list_models"] == 1


async def test_candidates_leave_out_the_workers_already_tried() -> None:
    resolver, _ = make(ScriptedController({"m": [W1, W2]}))
    assert await resolver.candidates("m", {W1}) == [W2]
    with pytest.raises(NoWorkerError):
        await resolver.candidates("m", {W1, W2})


async def test_equally_good_workers_come_first_in_turn() -> None:
    resolver, _ = make(ScriptedController({"m": [W1, W2]}))
    firsts = {(await resolver.candidates("m", set()))[0] for _ in range(50)}
    assert firsts == {W1, W2}


async def test_evicted_worker_is_not_chosen_again() -> None:
    controller = ScriptedController({"m": [W1, W2]})
    resolver, _ = make(controller)
    await resolver.evict("m", W1)
    assert await resolver.candidates("m", set()) == [W2]
    with pytest.raises(NoWorkerError):
        await resolver.candidates("m", {W2})


async def test_unknown_model_has_no_worker() -> None:
    resolver, _ = make(ScriptedController({"m": [W1]}))
    with pytest.raises(NoWorkerError):
        await resolver.candidates("other", set())


async def test_stale_addresses_serve_while_the_controller_is_down() -> None:
    controller = ScriptedController({"m": [W1]})
    resolver, catalog = make(controller, cache_ttl=0.01, cache_max_stale=60)
    assert await resolver.candidates("m", set()) == [W1]
    assert await catalog.models() == ["m"]
    controller.down = True
    import asyncio

    await asyncio.sleep(0.02)  # past the TTL on purpose: what is held is stale now
    assert await resolver.candidates("m", set()) == [W1]
    assert await catalog.models() == ["m"]


async def test_controller_down_with_a_cold_cache_is_unavailable() -> None:
    controller = ScriptedController({"m": [W1]})
    controller.down = True
    resolver, catalog = make(controller)
    with pytest.raises(ControllerUnavailableError):
        await catalog.models()
    with pytest.raises(ControllerUnavailableError):
        await resolver.candidates("m", set())


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
    assert await resolver.candidates("m", set()) == [W1]
    controller.workers["m"] = ["http://169.254.169.254:80"]
    poisoned = WorkerResolver(client, workers, MemoryCache(), settings)
    with pytest.raises(NoWorkerError):
        await poisoned.candidates("m", set())


class Registrations:
    """mqgate's controller: one worker of model "m", under a registration id that changes."""

    def __init__(self, address: str, registration: str, *, bulk: bool = True) -> None:
        self.address, self.registration, self.bulk = address, registration, bulk

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/get_worker_addresses" and self.bulk:
            return httpx.Response(200, json={"addresses": [self.address], "registrations": {
                self.address: self.registration}})
        if request.url.path == "/get_worker_address":
            return httpx.Response(200, json={"address": self.address})
        return httpx.Response(404)


class Worker:
    """What the worker at one address answers about itself, and how often it was asked."""

    def __init__(self, template: str, context_length: int) -> None:
        self.template, self.context_length = template, context_length
        self.asked = 0

    async def conv_template(self, address: str, model: str) -> ConvTemplate:
        self.asked += 1
        return ConvTemplate(name=self.template)

    async def model_details(self, address: str, model: str) -> ModelDetails:
        return ModelDetails(context_length=self.context_length)


def resolver_for(controller: Registrations, worker: Worker, cache: MemoryCache,
                 **overrides: float) -> WorkerResolver:
    settings = Settings(namespace="unit", **overrides)  # type: ignore[arg-type]
    client = ControllerClient("http://c", timeout=1, transport=httpx.MockTransport(controller))
    return WorkerResolver(client, cast(WorkerClient, worker), cache, settings)


async def announce(cache: MemoryCache, address: str, registration: str) -> None:
    notice = WorkerRegistered(worker_name=address, registration=registration, model_names=["m"])
    await cache.publish(Topology(namespace="unit").registrations_channel,
                        notice.model_dump_json())


async def test_a_worker_registered_again_is_asked_for_its_template_again() -> None:
    controller, worker, cache = Registrations(W1, "r1"), Worker("vicuna_v1.1", 2048), MemoryCache()
    resolver = resolver_for(controller, worker, cache)
    assert (await resolver.template(W1, "m")).name == "vicuna_v1.1"
    assert (await resolver.template(W1, "m")).name == "vicuna_v1.1"
    assert worker.asked == 1
    controller.registration = "r2"  # upgraded in place: same address and model name
    worker.template, worker.context_length = "llama-2", 4096
    await announce(cache, W1, "r2")
    assert (await resolver.template(W1, "m")).name == "llama-2"
    assert await resolver.context_length(W1, "m") == 4096


async def test_a_template_in_the_shared_cache_is_not_reused_after_a_registration() -> None:
    """Dispatchers restarted after a registration they did not hear of: once the worker list
    is read again, the shared cache's template of the old registration is not used."""
    controller, worker, shared = Registrations(W1, "r1"), Worker("vicuna_v1.1", 2048), MemoryCache()
    assert (await resolver_for(controller, worker, shared).template(W1, "m")).name == "vicuna_v1.1"
    controller.registration = "r2"
    worker.template = "llama-2"
    await shared.delete("unit:workers:m")  # the cached worker list expired
    restarted = resolver_for(controller, worker, shared)
    assert (await restarted.template(W1, "m")).name == "llama-2"


async def test_without_registration_ids_an_unreachable_worker_is_asked_again() -> None:
    controller = Registrations(W1, "", bulk=False)  # FastChat's controller
    worker, cache = Worker("vicuna_v1.1", 2048), MemoryCache()
    resolver = resolver_for(controller, worker, cache)
    assert (await resolver.template(W1, "m")).name == "vicuna_v1.1"
    worker.template = "llama-2"
    await resolver.evict("m", W1)
    assert (await resolver.template(W1, "m")).name == "llama-2"
    other = resolver_for(controller, worker, cache)  # another dispatcher, same shared cache
    assert (await other.template(W1, "m")).name == "llama-2"
