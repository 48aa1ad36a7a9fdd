"""The controller's routes answer with the bytes FastChat's controller sends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from contracts.fastchat import ErrorCode, WorkerStatus
from contracts.settings import Settings
from controller.app import controller_app
from controller.registry import MemoryHashStore
from controller.service import Controller
from tests.unit.controller.fakes import Clock, Workers

W1 = "http://w1:21002"


@pytest.fixture
async def client(controller: Controller) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=controller_app(controller))
    async with httpx.AsyncClient(transport=transport, base_url="http://controller") as client:
        yield client


async def post(client: httpx.AsyncClient, path: str, body: object = None) -> bytes:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.content


async def register(client: httpx.AsyncClient, name: str, models: list[str]) -> bytes:
    return await post(client, "/register_worker", {
        "worker_name": name, "check_heart_beat": True,
        "worker_status": {"model_names": models, "speed": 1, "queue_length": 0}})


async def test_registration_and_what_it_lists(client: httpx.AsyncClient) -> None:
    assert await register(client, W1, ["b", "a"]) == b"null"
    assert await post(client, "/list_models") == b'{"models":["a","b"]}'
    assert await post(client, "/list_language_models") == b'{"models":["a","b"]}'
    assert await post(client, "/list_multimodal_models") == b'{"models":[]}'
    assert await post(client, "/worker_get_status") == (
        b'{"model_names":["a","b"],"speed":1,"queue_length":0}')
    addresses = orjson.loads(await post(client, "/get_worker_addresses", {"model": "a"}))
    assert addresses["addresses"] == [W1]
    assert list(addresses["registrations"]) == [W1]


async def test_heart_beats(client: httpx.AsyncClient) -> None:
    unknown = {"worker_name": W1, "queue_length": 0}
    assert await post(client, "/receive_heart_beat", unknown) == b'{"exist":false}'
    await register(client, W1, ["m"])
    assert await post(client, "/receive_heart_beat", unknown) == b'{"exist":true}'


async def test_a_silent_worker_is_no_longer_handed_out(client: httpx.AsyncClient,
                                                       clock: Clock) -> None:
    await register(client, W1, ["m"])
    assert await post(client, "/get_worker_address", {"model": "m"}) == (
        b'{"address":"' + W1.encode() + b'"}')
    clock.now += 91
    assert await post(client, "/get_worker_address", {"model": "m"}) == b'{"address":""}'
    assert await post(client, "/list_models") == b'{"models":[]}'


async def test_refresh_drops_workers_that_do_not_answer(client: httpx.AsyncClient,
                                                        workers: Workers) -> None:
    await register(client, W1, ["m"])
    await register(client, "http://gone:1", ["m", "gone"])
    workers.statuses[W1] = WorkerStatus(model_names=["m"])
    assert await post(client, "/refresh_all_workers") == b"null"
    assert await post(client, "/list_models") == b'{"models":["m"]}'


async def test_generation_is_relayed_to_a_worker_of_the_model(client: httpx.AsyncClient,
                                                              workers: Workers) -> None:
    stream = b'{"text":"hi","error_code":0}\x00{"text":"hi!","error_code":0}\x00'
    workers.streams[W1] = stream
    await register(client, W1, ["m"])
    body = b'{"model":"m","prompt":"p","images":[]}'
    response = await client.post("/worker_generate_stream", content=body)
    assert response.content == stream
    assert workers.generate_bodies == [body]  # sent on as it came


async def test_relay_errors_are_fastchat_frames(client: httpx.AsyncClient) -> None:
    none = await client.post("/worker_generate_stream", json={"model": "m", "prompt": "p"})
    assert none.content == (b'{"text":"no worker serves this model","error_code":'
                            + str(int(ErrorCode.CONTROLLER_NO_WORKER)).encode() + b"}\x00")
    await register(client, "http://unreachable:1", ["m"])
    failed = await client.post("/worker_generate_stream", json={"model": "m", "prompt": "p"})
    frame = orjson.loads(failed.content.rstrip(b"\0"))
    assert frame["error_code"] == ErrorCode.CONTROLLER_WORKER_TIMEOUT


async def test_health_readiness_and_connection_test(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready",
                                                       "checks": {"redis": True}})
    assert (await client.get("/test_connection")).content == b'"success"'


class DownStore(MemoryHashStore):
    async def hgetall(self, name: str) -> dict[str, str]:
        raise ConnectionError("redis is down")


async def test_not_ready_while_the_store_does_not_answer(settings: Settings) -> None:
    async with Controller(settings, DownStore()) as controller:
        transport = httpx.ASGITransport(app=controller_app(controller))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()) == (503, {"status": "unready",
                                                       "checks": {"redis": False}})
