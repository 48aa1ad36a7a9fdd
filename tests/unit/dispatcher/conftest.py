from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from contracts.settings import Settings
from dispatcher.cache import MemoryCache
from dispatcher.forwarder import WorkerClient
from dispatcher.resolver import ControllerClient, WorkerResolver
from dispatcher.service import DispatchService
from tests.unit.dispatcher.fakes import ScriptedController, ScriptedWorkers

W1, W2 = "http://w1:1", "http://w2:2"


@pytest.fixture
def scripted_workers() -> ScriptedWorkers:
    return ScriptedWorkers()


@pytest.fixture
def scripted_controller() -> ScriptedController:
    return ScriptedController({"m": [W1, W2]})


@pytest.fixture
async def service(scripted_workers: ScriptedWorkers,
                  scripted_controller: ScriptedController) -> AsyncIterator[DispatchService]:
    settings = Settings(namespace="unit")
    workers = WorkerClient(connect_timeout=1, read_timeout=5,
                           transport=httpx.MockTransport(scripted_workers))
    controller = ControllerClient("http://controller", timeout=1,
                                  transport=httpx.MockTransport(scripted_controller))
    resolver = WorkerResolver(controller, workers, MemoryCache(), settings)
    yield DispatchService(resolver=resolver, workers=workers, attempts=3,
                          embedding_batch_size=2)
    await workers.aclose()
    await controller.aclose()
