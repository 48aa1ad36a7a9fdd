"""Jobs that must never reach a worker, and jobs that crash every dispatcher."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.test_queue import wait_log
from tests.stack import Stack

pytestmark = pytest.mark.faults


def test_job_cancelled_while_queued_is_never_forwarded(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    stack.start_controller()
    worker = stack.start_worker("w", ["fake"])
    stack.wait_models(["fake"])
    stack.start_api()  # no dispatcher yet: the job waits in the queue
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(stack.base_url + "/v1/chat/completions", timeout=1.0, json={
            "model": "fake", "messages": [{"role": "user", "content": "never run me"}]})
    time.sleep(0.5)  # the api publishes the cancel
    dispatcher = stack.start_dispatcher()
    wait_log(dispatcher, "consuming")
    stack.wait_serving("fake")
    assert not any("never run me" in p for p in worker.stats()["prompts"])


def test_poison_job_is_dead_lettered_and_answered_once(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(MQGATE_QUEUE_TYPE="quorum", MQGATE_DELIVERY_LIMIT="1")
    stack.start_controller()
    worker = stack.start_worker("w", ["fake"])
    stack.wait_models(["fake"])
    stack.start_api()
    content = "crash every dispatcher [[delay=0.3]] [[tokens=20]]"
    kills = 0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, stack.base_url + "/v1/chat/completions",
                              timeout=60, json={"model": "fake", "messages": [
                                  {"role": "user", "content": content}]})
        while not pending.done() and kills < 5:
            dispatcher = stack.start_dispatcher()
            deadline = time.monotonic() + 20
            while (not pending.done() and time.monotonic() < deadline
                   and worker.stats()["active"] == 0):
                time.sleep(0.02)
            if pending.done():
                break
            dispatcher.kill()  # the job "crashes" the dispatcher that runs it
            dispatcher.popen.wait(10)
            kills += 1
            while worker.stats()["active"]:
                time.sleep(0.02)
        response = pending.result()
    assert kills == 2  # delivery limit 1: delivered twice, then dead-lettered
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "job_failed_repeatedly"
    assert response.headers.get("x-should-retry") == "false"
    survivor = stack.start_dispatcher()
    wait_log(survivor, "consuming")
    healthy = httpx.post(stack.base_url + "/v1/chat/completions", timeout=30, json={
        "model": "fake", "messages": [{"role": "user", "content": "other traffic"}]})
    assert healthy.status_code == 200
