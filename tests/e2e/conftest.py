from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import cleanup_namespace
from tests.stack import Stack

API_KEYS = ("sk-test-one", "sk-test-two")
DEAD_WORKER = "http://127.0.0.1:9"  # discard port: nothing listens, connections are refused
MAX_BODY = 65536


def register_dead_worker(stack: Stack, models: list[str]) -> None:
    httpx.post(stack.controller_url + "/register_worker", timeout=5, json={
        "worker_name": DEAD_WORKER, "check_heart_beat": False,
        "worker_status": {"model_names": models, "speed": 1, "queue_length": 0}},
    ).raise_for_status()


@contextlib.contextmanager
def undispatched_stack(workdir: Path, env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A stack of its own for one test: the controller, worker "w" serving model "fake" and
    the api, but no dispatcher yet (the test starts those it needs); stopped and its
    namespace cleaned up afterwards."""
    s = Stack(workdir, env_extra=env or {})
    try:
        s.start_controller()
        s.start_worker("w", ["fake"])
        s.wait_models(["fake"])
        s.start_api()
        yield s
    finally:
        s.stop()
        asyncio.run(cleanup_namespace(s.namespace))


@pytest.fixture(scope="session")
def stack(services: None, session_workdir: Path) -> Iterator[Stack]:
    """The shared stack: two dispatchers, workers for several models, API keys on."""
    s = Stack(session_workdir, env_extra={"MQGATE_API_KEYS": ",".join(API_KEYS),
                                          "MQGATE_MAX_BODY_BYTES": str(MAX_BODY)})
    s.api_key = API_KEYS[1]
    try:
        s.start_controller()
        s.start_worker("a", ["fake", "dual"])
        s.start_worker("b", ["fake"])
        s.start_worker("chatml", ["chatml-model"], "--template", "chatml")
        s.start_worker("tiny", ["tiny"], "--context-length", "64")
        s.wait_models(["fake", "dual", "chatml-model", "tiny"])
        register_dead_worker(s, ["dual", "ghost"])
        s.start_dispatcher()
        s.start_dispatcher()
        s.start_api()
        s.wait_serving("fake")
        yield s
    finally:
        s.stop()
        asyncio.run(cleanup_namespace(s.namespace))


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url + "/v1", api_key=stack.api_key,
                       max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture
def aclient(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.base_url + "/v1", api_key=stack.api_key,
                              max_retries=0, timeout=60)


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, headers=stack.headers(), timeout=30) as c:
        yield c
