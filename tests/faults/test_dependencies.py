"""Redis stopped or hung, the controller down, a worker killed mid-stream."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.prompts import vicuna
from tests.fakeworker import expected_text
from tests.faults.conftest import PrivateRedis
from tests.stack import Stack

pytestmark = pytest.mark.faults


def served(stack: Stack, count: int, tag: str) -> list[float]:
    """Send ``count`` requests one after another; all must be answered exactly."""
    took = []
    for i in range(count):
        content = f"{tag} {i}"
        started = time.monotonic()
        response = httpx.post(stack.base_url + "/v1/chat/completions", timeout=30, json={
            "model": "fake", "messages": [{"role": "user", "content": content}]})
        took.append(time.monotonic() - started)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == expected_text(
            vicuna(content))[0]
    return took


@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_redis_failure_costs_latency_not_requests(make_stack: Callable[..., Stack],
                                                  private_redis: PrivateRedis, fault: str,
                                                  figures: list[str]) -> None:
    stack = make_stack(MQGATE_REDIS_URL=private_redis.url, MQGATE_CACHE_TTL="0.5",
                             MQGATE_TEMPLATE_TTL="0.5").start_serving_fake("w")
    healthy = served(stack, 10, "warm")
    if fault == "hung":
        private_redis.hang()
    else:
        private_redis.stop()
    try:
        degraded = served(stack, 30, f"redis {fault}")
    finally:
        private_redis.resume()
    slowest = max(degraded)
    # each process pays at most one short Redis timeout now and then, never a hang
    assert slowest < 2.0, f"slowest request {slowest:.3f}s (healthy max {max(healthy):.3f}s)"
    figures.append(f"redis {fault}: median {sorted(degraded)[15] * 1000:.1f} ms, max "
          f"{slowest * 1000:.1f} ms; healthy median {sorted(healthy)[5] * 1000:.1f} ms")


def test_controller_down_with_a_warm_cache(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(MQGATE_CACHE_TTL="1", MQGATE_CACHE_MAX_STALE="60").start_serving_fake("w")
    served(stack, 3, "warm")
    controller = next(p for p in stack.procs if p.name == "controller")
    controller.kill(signal.SIGKILL)
    controller.popen.wait(10)
    time.sleep(1.5)  # past the 1 s TTL on purpose: every answer now comes from the stale cache
    served(stack, 10, "controller down")
    started = time.monotonic()
    unknown = httpx.post(stack.base_url + "/v1/chat/completions", timeout=30, json={
        "model": "never-seen", "messages": [{"role": "user", "content": "x"}]})
    assert unknown.status_code == 503
    assert unknown.json()["error"]["code"] == "controller_unavailable"
    assert time.monotonic() - started < 5


def test_worker_killed_mid_stream_ends_the_stream_with_an_error(
        make_stack: Callable[..., Stack], figures: list[str]) -> None:
    stack = make_stack().start_serving_fake("w")
    worker = stack.workers["w"]
    body = {"model": "fake", "stream": True,
            "messages": [{"role": "user", "content": "die [[delay=0.2]] [[tokens=50]]"}]}
    with httpx.stream("POST", stack.base_url + "/v1/chat/completions", json=body,
                      timeout=30) as response:
        lines = (line for line in response.iter_lines() if line)
        events = [next(lines) for _ in range(3)]
        worker.proc.kill(signal.SIGKILL)
        killed = time.monotonic()
        events += list(lines)
        took = time.monotonic() - killed
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2][len("data: "):])
    assert set(error) == {"error"}
    assert took < 1.0, f"the error came {took:.3f}s after the worker died"
    figures.append(f"worker killed: error event after {took * 1000:.1f} ms")
