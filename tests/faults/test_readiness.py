"""/readyz answers what a load balancer asks: can this api take and answer requests? It stays
ready while the failure table says requests are served (Redis down, the controller down with
the model list cached), and says what is degraded in its body; it is unready when requests
cannot be answered (no dispatcher takes jobs)."""

from __future__ import annotations

import signal
from collections.abc import Callable

import httpx
import pytest

from tests.faults.conftest import PrivateRedis, chat
from tests.stack import Stack
from tests.waiting import wait_until

pytestmark = pytest.mark.faults


def readiness(stack: Stack) -> httpx.Response:
    return httpx.get(stack.base_url + "/readyz", timeout=10)


def test_ready_while_requests_are_served(make_stack: Callable[..., Stack],
                                         private_redis: PrivateRedis) -> None:
    stack = make_stack(MQGATE_REDIS_URL=private_redis.url, MQGATE_CACHE_TTL="0.5",
                       MQGATE_CACHE_MAX_STALE="120").start_serving_fake("w")
    assert readiness(stack).status_code == 200

    private_redis.stop()
    wait_until(lambda: readiness(stack).json()["checks"]["redis"] is False, timeout=10,
               what="/readyz to see Redis gone")
    ready = readiness(stack)
    assert ready.status_code == 200, ready.text
    assert "redis" in ready.json()["reasons"]
    assert chat(stack, "without redis").status_code == 200  # type: ignore[attr-defined]

    controller = next(p for p in stack.procs if p.name == "controller")
    controller.kill(signal.SIGKILL)
    controller.popen.wait(10)
    wait_until(lambda: readiness(stack).json()["checks"]["controller"] is False, timeout=10,
               what="/readyz to see the controller gone")
    ready = readiness(stack)
    assert ready.status_code == 200, ready.text  # the model list is still known
    assert ready.json()["checks"]["models"] is True
    assert chat(stack, "without the controller").status_code == 200  # type: ignore[attr-defined]

    for dispatcher in stack.dispatchers:
        dispatcher.stop()
    wait_until(lambda: readiness(stack).status_code == 503, timeout=20,
               what="/readyz to say that nothing takes jobs")
    assert readiness(stack).json()["checks"]["dispatchers"] is False
