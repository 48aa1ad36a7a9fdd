"""Requests that no dispatcher takes: a 503 after a bounded wait, unless one comes back."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contracts.settings import Settings
from tests.e2e.conftest import undispatched_stack
from tests.e2e.prompts import vicuna
from tests.e2e.test_queue import wait_log
from tests.fakeworker import expected_text
from tests.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def undispatched(services: None, tmp_path: Path,
                 request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Controller, a worker and the api, but no dispatcher."""
    with undispatched_stack(tmp_path, getattr(request, "param", {})) as s:
        yield s


def chat(stack: Stack, content: str, *, stream: bool = False) -> httpx.Response:
    return httpx.post(stack.base_url + "/v1/chat/completions", timeout=60, json={
        "model": "fake", "stream": stream,
        "messages": [{"role": "user", "content": content}]})


def streamed_text(response: httpx.Response) -> str:
    events = [line[len("data: "):] for line in response.text.splitlines()
              if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                   for e in events[:-1])


@pytest.mark.parametrize("undispatched", [{"MQGATE_NO_DISPATCHER_TIMEOUT": "1"}],
                         indirect=True)
def test_with_no_dispatcher_a_request_gets_a_503_that_says_so(undispatched: Stack) -> None:
    stack = undispatched
    queue = Settings(namespace=stack.namespace).topology.lane("fake")
    for response in (chat(stack, "nobody takes me"), chat(stack, "nor me", stream=True)):
        assert response.status_code == 503, response.text  # a stream's, before it starts
        assert response.headers["retry-after"]
        error = response.json()["error"]
        assert error["code"] == "no_dispatcher"
        assert error["type"] == "service_unavailable"
        assert queue in error["message"]

    ready = httpx.get(stack.base_url + "/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"]["dispatchers"] is False
    assert queue in ready.json()["reasons"]["dispatchers"]

    # one job at a time, oldest first: the jobs given up come before the warm-up request
    dispatcher = stack.start_dispatcher("--concurrency", "1")
    wait_log(dispatcher, "following the lane of fake")
    stack.wait_serving("fake")
    prompts = stack.workers["w"].stats()["prompts"]
    assert prompts and not any("nobody takes me" in p or "nor me" in p for p in prompts)
    ready = httpx.get(stack.base_url + "/readyz", timeout=10)
    assert ready.json()["checks"]["dispatchers"] is True
    assert "reasons" not in ready.json()


@pytest.mark.parametrize("undispatched", [{"MQGATE_NO_DISPATCHER_TIMEOUT": "60"}],
                         indirect=True)
def test_a_dispatcher_that_comes_back_within_the_wait_answers(undispatched: Stack) -> None:
    stack = undispatched
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        plain = pool.submit(chat, stack, "wait for me")
        streamed = pool.submit(chat, stack, "stream for me", stream=True)
        stack.wait_queued(2)
        stack.start_dispatcher()
        answered, streamed_response = plain.result(), streamed.result()
    assert answered.status_code == 200, answered.text
    assert answered.json()["choices"][0]["message"]["content"] == expected_text(
        vicuna("wait for me"))[0]
    assert streamed_response.status_code == 200, streamed_response.text
    assert streamed_text(streamed_response) == expected_text(vicuna("stream for me"))[0]
