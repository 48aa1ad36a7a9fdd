"""Jobs that must never reach a worker, and jobs that crash every dispatcher."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

import httpx
import pytest
import redis

from contracts.settings import Settings
from tests.conftest import REDIS_URL
from tests.e2e.test_queue import wait_log
from tests.stack import Stack
from tests.waiting import wait_until

pytestmark = pytest.mark.faults


def cancel_marked(stack: Stack) -> bool:
    """Whether the api left a cancel mark in the shared cache, which a dispatcher that was not
    listening when the cancel went out asks about (see ``consumers.cancel``)."""
    pattern = Settings(namespace=stack.namespace).topology.cancel_key("*")
    with redis.Redis.from_url(stack.env.get("MQGATE_REDIS_URL", REDIS_URL)) as client:
        return any(True for _ in client.scan_iter(match=pattern))


def test_job_cancelled_while_queued_is_never_forwarded(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    stack.start_controller()
    worker = stack.start_worker("w", ["fake"])
    stack.wait_models(["fake"])
    stack.start_api()  # no dispatcher yet: the job waits in the queue
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(stack.base_url + "/v1/chat/completions", timeout=1.0, json={
            "model": "fake", "messages": [{"role": "user", "content": "never run me"}]})
    wait_until(lambda: cancel_marked(stack), timeout=10,
               what="the api to mark the abandoned job cancelled", details=stack.logs)
    dispatcher = stack.start_dispatcher()
    wait_log(dispatcher, "following the lane of fake")
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
            wait_until(lambda: pending.done() or worker.stats()["active"] != 0, timeout=20,
                       interval=0.02, what="the job to run on the new dispatcher (or be answered)",
                       details=stack.logs)
            if pending.done():
                break
            dispatcher.kill()  # the job "crashes" the dispatcher that runs it
            dispatcher.popen.wait(10)
            kills += 1
            wait_until(lambda: worker.stats()["active"] == 0, timeout=20, interval=0.02,
                       what="the worker to close the killed dispatcher's generation")
        response = pending.result()
    assert kills == 2  # delivery limit 1: delivered twice, then dead-lettered
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "job_failed_repeatedly"
    assert response.headers.get("x-should-retry") == "false"
    survivor = stack.start_dispatcher()
    wait_log(survivor, "following the lane of fake")
    healthy = httpx.post(stack.base_url + "/v1/chat/completions", timeout=30, json={
        "model": "fake", "messages": [{"role": "user", "content": "other traffic"}]})
    assert healthy.status_code == 200
