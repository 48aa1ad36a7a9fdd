"""A worker never runs more generations than its limit, whichever dispatchers send them, and a
dispatcher killed while it holds slots gives them back."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import undispatched_stack
from tests.e2e.prompts import vicuna
from tests.fakeworker import expected_text
from tests.stack import Proc, Stack, Worker
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

LIMIT = 5


@pytest.fixture
def limited(services: None, tmp_path: Path) -> Iterator[Stack]:
    """Controller, one worker taking 5 generations at once, the api; no dispatcher yet."""
    with undispatched_stack(tmp_path, {"MQGATE_WORKER_CONCURRENCY": str(LIMIT),
                                       "MQGATE_LEASE_TTL": "2"}) as stack:
        yield stack


def chat_all(stack: Stack, contents: list[str]) -> list[httpx.Response]:
    """The chat requests, all at once."""
    def chat(content: str) -> httpx.Response:
        return httpx.post(stack.base_url + "/v1/chat/completions", timeout=120, json={
            "model": "fake", "messages": [{"role": "user", "content": content}]})

    with concurrent.futures.ThreadPoolExecutor(len(contents)) as pool:
        return list(pool.map(chat, contents))


def assert_answered(contents: list[str], responses: list[httpx.Response]) -> None:
    for content, response in zip(contents, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == expected_text(
            vicuna(content))[0]


def jobs_run(dispatcher: Proc) -> float:
    text = httpx.get(dispatcher.url + "/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "mqgate_dispatcher_jobs" for sample in family.samples
               if sample.name == "mqgate_dispatcher_jobs_total")


def start_dispatcher(stack: Stack) -> Proc:
    dispatcher = stack.start_dispatcher()
    wait_until(lambda: "following the lane of fake" in dispatcher.log.read_text(),
               timeout=30, what=f"{dispatcher.name} to follow the lane", details=stack.logs)
    return dispatcher


def wait_active(stack: Stack, worker: Worker, count: int) -> None:
    wait_until(lambda: worker.stats()["active"] == count, timeout=60,
               what=f"{count} generations running on the worker", details=stack.logs)


def test_two_dispatchers_never_give_a_worker_more_than_its_limit(limited: Stack) -> None:
    stack = limited
    dispatchers = [start_dispatcher(stack), start_dispatcher(stack)]
    stack.wait_serving("fake")
    before = [jobs_run(d) for d in dispatchers]
    contents = [f"slow {i} [[delay=0.2]] [[tokens=5]]" for i in range(20)]
    responses = chat_all(stack, contents)
    assert_answered(contents, responses)
    assert stack.workers["w"].stats()["max_active"] == LIMIT
    ran = [jobs_run(d) - b for d, b in zip(dispatchers, before, strict=True)]
    assert sum(ran) == len(contents) and all(ran)  # both dispatchers sent generations


def test_a_killed_dispatchers_slots_come_back(limited: Stack) -> None:
    stack = limited
    worker = stack.workers["w"]
    doomed = start_dispatcher(stack)
    stack.wait_serving("fake")
    contents = [f"through a crash {i} [[delay=0.3]] [[tokens=8]]" for i in range(LIMIT)]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(chat_all, stack, contents)
        wait_active(stack, worker, LIMIT)  # every slot is the doomed dispatcher's
        start_dispatcher(stack)
        doomed.kill()  # SIGKILL: its leases stay until they end
        assert_answered(contents, pending.result())  # redelivered, run by the survivor

    httpx.post(worker.url + "/_stats/max_active/reset", timeout=5).raise_for_status()
    later = [f"after the crash {i} [[delay=0.2]] [[tokens=5]]" for i in range(2 * LIMIT)]
    assert_answered(later, chat_all(stack, later))
    assert worker.stats()["max_active"] == LIMIT
