from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp.test_utils import TestServer

from contracts.settings import Settings
from discovery.cache import MemoryCache
from discovery.controller import ControllerClient
from dispatcher.capacity import WorkerCapacity
from dispatcher.capacity_store import MemorySlotStore
from dispatcher.forwarder import WorkerClient
from dispatcher.resolver import WorkerResolver
from dispatcher.service import DispatchService
from tests.unit.dispatcher.fakes import ScriptedController, ScriptedWorkers


@pytest.fixture
def scripted_workers() -> ScriptedWorkers:
    return ScriptedWorkers()


@pytest.fixture
async def addresses(scripted_workers: ScriptedWorkers) -> AsyncIterator[list[str]]:
    """Two live scripted workers on loopback."""
    servers = [TestServer(scripted_workers.app(), host="127.0.0.1") for _ in range(2)]
    for server in servers:
        await server.start_server()
    yield [f"http://127.0.0.1:{server.port}" for server in servers]
    for server in servers:
        await server.close()


@pytest.fixture
def scripted_controller(addresses: list[str]) -> ScriptedController:
    return ScriptedController({"m": list(addresses)})


@pytest.fixture
async def service(scripted_controller: ScriptedController) -> AsyncIterator[DispatchService]:
    settings = Settings(namespace="unit")
    workers = WorkerClient(connect_timeout=1, read_timeout=5)
    controller = ControllerClient("http://controller", timeout=1,
                                  transport=httpx.MockTransport(scripted_controller))
    cache = MemoryCache()
    resolver = WorkerResolver(controller, workers, cache, settings)
    capacity = WorkerCapacity(resolver, MemorySlotStore(), cache, settings)
    yield DispatchService(resolver=resolver, workers=workers, capacity=capacity, attempts=3,
                          embedding_batch_size=2)
    await workers.aclose()
    await controller.aclose()
