"""mqgate's controller speaks FastChat's protocol and keeps its registry in Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from contracts.fastchat import WorkerRegistered
from contracts.settings import Settings
from tests.conftest import REDIS_URL, cleanup_namespace
from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def controller(services: None, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path, env_extra={"MQGATE_HEART_BEAT_EXPIRATION": "2"})
    try:
        stack.start_controller()
        yield stack
    finally:
        stack.stop()
        asyncio.run(cleanup_namespace(stack.namespace))


def post(stack: Stack, path: str, body: object = None) -> httpx.Response:
    response = httpx.post(stack.controller_url + path, json=body, timeout=10)
    response.raise_for_status()
    return response


def register(stack: Stack, name: str, models: list[str], queue: int = 0) -> None:
    post(stack, "/register_worker", {"worker_name": name, "check_heart_beat": True,
                                     "worker_status": {"model_names": models, "speed": 1,
                                                       "queue_length": queue}})


def test_registration_and_model_lists(controller: Stack) -> None:
    register(controller, "http://w1", ["a", "b"])
    register(controller, "http://w2", ["b"])
    assert post(controller, "/list_models").json() == {"models": ["a", "b"]}
    assert post(controller, "/list_language_models").json() == {"models": ["a", "b"]}
    assert post(controller, "/list_multimodal_models").json() == {"models": []}
    answer = post(controller, "/get_worker_addresses", {"model": "b"}).json()
    assert answer["addresses"] == ["http://w1", "http://w2"]
    assert set(answer["registrations"]) == {"http://w1", "http://w2"}
    status = post(controller, "/worker_get_status").json()
    assert status == {"model_names": ["a", "b"], "speed": 2, "queue_length": 0}
    assert post(controller, "/get_worker_address", {"model": "zzz"}).json() == {"address": ""}
    assert httpx.get(controller.controller_url + "/test_connection").json() == "success"


def test_shortest_queue_alternates_between_workers(controller: Stack) -> None:
    register(controller, "http://w1", ["m"])
    register(controller, "http://w2", ["m"])
    picks = [post(controller, "/get_worker_address", {"model": "m"}).json()["address"]
             for _ in range(4)]
    assert sorted(picks) == ["http://w1", "http://w1", "http://w2", "http://w2"]
    assert picks[0] != picks[1]


def test_heart_beats_keep_workers_and_silence_expires_them(controller: Stack) -> None:
    assert post(controller, "/receive_heart_beat",
                {"worker_name": "http://ghost", "queue_length": 0}).json() == {"exist": False}
    register(controller, "http://w1", ["m"])
    register(controller, "http://w2", ["m"])
    for _ in range(4):  # w1 beats every 0.8 s, w2 stays silent past the 2 s expiration
        time.sleep(0.8)  # the pace of the heart beats is the behaviour under test
        assert post(controller, "/receive_heart_beat",
                    {"worker_name": "http://w1", "queue_length": 3}).json() == {"exist": True}
    assert post(controller, "/get_worker_addresses", {"model": "m"}).json()["addresses"] == [
        "http://w1"]


def test_registry_survives_a_controller_restart(controller: Stack) -> None:
    register(controller, "http://w1", ["m"])
    for proc in controller.procs:
        proc.stop()
    controller.procs.clear()
    controller.start_controller()
    assert post(controller, "/list_models").json() == {"models": ["m"]}


def test_refresh_drops_workers_that_do_not_answer(controller: Stack) -> None:
    register(controller, "http://127.0.0.1:9", ["m"])
    post(controller, "/refresh_all_workers")
    assert post(controller, "/list_models").json() == {"models": []}


def test_registration_without_status_asks_the_worker(controller: Stack) -> None:
    worker = controller.start_worker("w", ["polled"])
    post(controller, "/register_worker", {"worker_name": worker.url,
                                          "check_heart_beat": False})
    assert "polled" in post(controller, "/list_models").json()["models"]


def test_lottery_dispatch(services: None, tmp_path: Path) -> None:
    stack = Stack(tmp_path, env_extra={"MQGATE_DISPATCH_METHOD": "lottery"})
    try:
        stack.start_controller()
        register(stack, "http://w1", ["m"])
        register(stack, "http://w2", ["m"])
        picks = {post(stack, "/get_worker_address", {"model": "m"}).json()["address"]
                 for _ in range(40)}
        assert picks == {"http://w1", "http://w2"}
    finally:
        stack.stop()
        asyncio.run(cleanup_namespace(stack.namespace))


def registration(stack: Stack, model: str, name: str) -> str:
    answer = post(stack, "/get_worker_addresses", {"model": model}).json()
    return str(answer["registrations"][name])


def test_each_registration_gets_an_id_that_heart_beats_keep(controller: Stack) -> None:
    register(controller, "http://w1", ["m"])
    first = registration(controller, "m", "http://w1")
    post(controller, "/receive_heart_beat", {"worker_name": "http://w1", "queue_length": 1})
    assert registration(controller, "m", "http://w1") == first
    register(controller, "http://w1", ["m"])
    assert registration(controller, "m", "http://w1") not in ("", first)


async def test_a_registration_is_announced_with_old_and_new_model_names(
        controller: Stack) -> None:
    await asyncio.to_thread(register, controller, "http://w1", ["old"])
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(Settings(namespace=controller.namespace).topology
                                   .registrations_channel)
            await asyncio.to_thread(register, controller, "http://w1", ["new"])
            async with asyncio.timeout(10):
                message = None
                while message is None:
                    message = await pubsub.get_message(timeout=10)
    finally:
        await client.aclose()
    notice = WorkerRegistered.model_validate_json(message["data"])
    assert notice.worker_name == "http://w1"
    assert notice.model_names == ["new", "old"]
    assert notice.registration == await asyncio.to_thread(registration, controller, "new",
                                                          "http://w1")
