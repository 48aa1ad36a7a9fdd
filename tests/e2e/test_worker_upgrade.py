"""A worker upgraded in place: same address and model name, another conversation template."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import cleanup_namespace
from tests.e2e.prompts import chatml, vicuna
from tests.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def long_caches(services: None, tmp_path: Path) -> Iterator[Stack]:
    """Worker lists and templates cached far longer than any test runs: only a registration
    can make a dispatcher ask a worker again."""
    stack = Stack(tmp_path, env_extra={"MQGATE_CACHE_TTL": "600", "MQGATE_TEMPLATE_TTL": "600"})
    try:
        yield stack
    finally:
        stack.stop()
        asyncio.run(cleanup_namespace(stack.namespace))


def chat(stack: Stack, content: str) -> httpx.Response:
    return httpx.post(stack.base_url + "/v1/chat/completions", timeout=30, json={
        "model": "fake", "messages": [{"role": "user", "content": content}]})


def register_at_start(stack: Stack, address: str, models: list[str]) -> None:
    """What a FastChat worker does when it starts."""
    httpx.post(stack.controller_url + "/register_worker", timeout=10, json={
        "worker_name": address, "check_heart_beat": True,
        "worker_status": {"model_names": models, "speed": 1, "queue_length": 0}},
    ).raise_for_status()


def test_the_next_prompt_after_a_registration_uses_the_new_template(long_caches: Stack) -> None:
    stack = long_caches
    stack.start_controller()
    old = stack.start_worker("old", ["fake"])  # vicuna_v1.1
    stack.wait_models(["fake"])
    stack.start_dispatcher()
    stack.start_api()
    stack.wait_serving("fake")
    assert chat(stack, "before the upgrade").status_code == 200
    assert old.stats()["prompts"][-1] == vicuna("before the upgrade")

    old.proc.stop()
    port = int(old.url.rsplit(":", 1)[1])
    new = stack.start_worker("new", ["fake"], "--template", "chatml", port=port)
    register_at_start(stack, new.url, ["fake"])

    response = chat(stack, "after the upgrade")
    assert response.status_code == 200, response.text
    assert new.stats()["prompts"] == [chatml("after the upgrade")]
