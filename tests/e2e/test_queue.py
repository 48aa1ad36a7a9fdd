"""Admission, deadlines and dispatcher failure, each on a stack of its own."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import undispatched_stack
from tests.e2e.prompts import vicuna
from tests.fakeworker import expected_text
from tests.stack import Proc, Stack
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_stack(services: None, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    with undispatched_stack(tmp_path, getattr(request, "param", {})) as s:
        yield s


def wait_log(proc: Proc, text: str, timeout: float = 20.0) -> None:
    wait_until(lambda: text in proc.log.read_text(errors="replace"), timeout=timeout,
               what=f"{proc.name} to log {text!r}", details=proc.tail)


def chat(stack: Stack, content: str, timeout: float = 30.0, **extra: object) -> httpx.Response:
    return httpx.post(stack.base_url + "/v1/chat/completions", timeout=timeout,
                      json={"model": "fake", "messages": [{"role": "user", "content": content}],
                            **extra})


@pytest.mark.parametrize("own_stack", [{"MQGATE_QUEUE_MAX_LENGTH": "2",
                                        "MQGATE_REQUEST_TIMEOUT": "3"}], indirect=True)
def test_full_queue_is_429_and_expired_jobs_never_reach_a_worker(own_stack: Stack) -> None:
    stack = own_stack  # no dispatcher yet: jobs stay queued
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(chat, stack, f"queued {i}") for i in range(2)]
        stack.wait_queued(2)
        started = time.monotonic()
        rejected = chat(stack, "one too many")
        refused_in = time.monotonic() - started
        assert rejected.status_code == 429
        assert refused_in < 0.5  # refused at once (the broker's nack), never a wait
        assert rejected.headers["retry-after"]
        assert rejected.json()["error"]["code"] == "queue_full"
        assert rejected.json()["error"]["type"] == "rate_limit_error"
        for future in waiting:
            response = future.result()
            assert response.status_code == 504
            assert response.json()["error"]["code"] == "deadline_exceeded"
    dispatcher = stack.start_dispatcher()
    wait_log(dispatcher, "following the lane of fake")
    served = chat(stack, "after the queue drained")
    assert served.status_code == 200
    assert served.json()["choices"][0]["message"]["content"] == expected_text(
        vicuna("after the queue drained"))[0]
    assert stack.workers["w"].stats()["prompts"] == [vicuna("after the queue drained")]


def test_killed_dispatcher_non_stream_job_is_answered_once(own_stack: Stack) -> None:
    stack = own_stack
    first = stack.start_dispatcher()
    wait_log(first, "following the lane of fake")
    content = "survive the crash [[delay=0.2]] [[tokens=12]]"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(chat, stack, content)
        stack.workers["w"].wait_generating()
        second = stack.start_dispatcher()
        wait_log(second, "following the lane of fake")
        first.kill()
        response = pending.result()
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["choices"]) == 1
    assert body["choices"][0]["message"]["content"] == expected_text(vicuna(content))[0]
    assert stack.workers["w"].stats()["started"] == 2  # generated again after redelivery


def test_killed_dispatcher_mid_stream_ends_the_stream_with_an_error(own_stack: Stack) -> None:
    stack = own_stack
    first = stack.start_dispatcher()
    wait_log(first, "following the lane of fake")
    content = "stream through a crash [[delay=0.2]] [[tokens=30]]"
    body = {"model": "fake", "stream": True,
            "messages": [{"role": "user", "content": content}]}
    with httpx.stream("POST", stack.base_url + "/v1/chat/completions", json=body,
                      timeout=30) as response:
        lines = (line for line in response.iter_lines() if line)
        events = [next(lines) for _ in range(3)]
        second = stack.start_dispatcher()  # takes the job when the first one dies
        wait_log(second, "following the lane of fake")
        first.kill()
        killed_at = time.monotonic()
        events += list(lines)
        ended_after = time.monotonic() - killed_at
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2][len("data: "):])
    assert set(error) == {"error"}
    chunks = [json.loads(e[len("data: "):]) for e in events[:-2]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    full = expected_text(vicuna(content))[0]
    assert full.startswith(text) and text != full  # a prefix, never repeated or mixed
    assert ended_after < 4  # the stream errs promptly once its dispatcher is gone


def test_sigterm_lets_the_dispatcher_finish_its_jobs(own_stack: Stack) -> None:
    stack = own_stack
    dispatcher = stack.start_dispatcher()
    wait_log(dispatcher, "following the lane of fake")
    content = "finish me [[delay=0.2]] [[tokens=10]]"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(chat, stack, content)
        stack.workers["w"].wait_generating()
        dispatcher.kill(signal.SIGTERM)
        response = pending.result()
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == expected_text(
        vicuna(content))[0]
    assert dispatcher.popen.wait(30) == 0
    assert stack.workers["w"].stats()["started"] == 1


@pytest.mark.parametrize("own_stack", [{"MQGATE_SHUTDOWN_GRACE": "0.5"}], indirect=True)
def test_sigterm_requeues_what_does_not_finish_in_the_grace_period(own_stack: Stack) -> None:
    stack = own_stack
    first = stack.start_dispatcher()
    wait_log(first, "following the lane of fake")
    content = "too slow to finish [[delay=0.2]] [[tokens=15]]"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(chat, stack, content)
        stack.workers["w"].wait_generating()
        second = stack.start_dispatcher()
        wait_log(second, "following the lane of fake")
        first.kill(signal.SIGTERM)
        response = pending.result()
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == expected_text(
        vicuna(content))[0]
    assert first.popen.wait(30) == 0
    assert stack.workers["w"].stats()["started"] == 2  # requeued, run again by the second
