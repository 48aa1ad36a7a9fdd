"""The registry's registration ids and announcements, in memory (as ``mqgate serve`` runs it)."""

from __future__ import annotations

from typing import cast

import httpx

from contracts.fastchat import ConvTemplate, ModelDetails, WorkerStatus
from contracts.settings import Settings
from controller.registry import MemoryHashStore, Registry
from discovery.cache import MemoryCache
from discovery.controller import ControllerClient
from dispatcher.forwarder import WorkerClient
from dispatcher.resolver import WorkerResolver

W1 = "http://w1:1"
SETTINGS = Settings(namespace="unit")


def registry(store: MemoryHashStore) -> Registry:
    return Registry(store, SETTINGS.topology, expiration=90)


async def test_each_registration_has_its_own_id_and_heart_beats_keep_it() -> None:
    workers = registry(MemoryHashStore())
    first = await workers.register(W1, WorkerStatus(model_names=["a"]), check_heart_beat=True,
                                   multimodal=False)
    assert await workers.addresses("a") == {W1: first.registration}
    assert await workers.heart_beat(W1, 3)
    assert await workers.addresses("a") == {W1: first.registration}
    second = await workers.register(W1, WorkerStatus(model_names=["b"]),
                                    check_heart_beat=True, multimodal=False)
    assert second.registration not in ("", first.registration)
    assert second.model_names == ["a", "b"]  # what it served before, and serves now
    assert await workers.addresses("b") == {W1: second.registration}


class Worker:
    def __init__(self) -> None:
        self.template = "vicuna_v1.1"

    async def conv_template(self, address: str, model: str) -> ConvTemplate:
        return ConvTemplate(name=self.template)

    async def model_details(self, address: str, model: str) -> ModelDetails:
        return ModelDetails()


async def test_a_registration_reaches_a_dispatcher_in_the_same_process() -> None:
    cache = MemoryCache()
    workers = registry(MemoryHashStore(relay=cache.publish))

    async def controller(request: httpx.Request) -> httpx.Response:
        found = await workers.addresses("m")
        return httpx.Response(200, json={"addresses": list(found), "registrations": found})

    worker = Worker()
    resolver = WorkerResolver(
        ControllerClient("http://c", timeout=1, transport=httpx.MockTransport(controller)),
        cast(WorkerClient, worker), cache, SETTINGS.model_copy(update={"cache_ttl": 600}))
    status = WorkerStatus(model_names=["m"])
    await workers.announce(await workers.register(W1, status, check_heart_beat=True,
                                                  multimodal=False))
    assert (await resolver.template(W1, "m")).name == "vicuna_v1.1"
    worker.template = "llama-2"
    await workers.announce(await workers.register(W1, status, check_heart_beat=True,
                                                  multimodal=False))
    assert (await resolver.template(W1, "m")).name == "llama-2"
