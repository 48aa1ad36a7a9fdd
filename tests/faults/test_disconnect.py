"""A client that goes away stops the worker's generation, stream or not."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.stack import Stack, Worker
from tests.waiting import wait_until

pytestmark = pytest.mark.faults

SLOW = "go away [[delay=0.1]] [[tokens=300]]"


def _aborted_after(worker: Worker, before: int, since: float) -> float:
    """Seconds from ``since`` until the worker saw its generation closed."""
    wait_until(lambda: worker.stats()["aborted"] > before, timeout=10, interval=0.01,
               what="the worker to see its generation closed")
    return time.monotonic() - since


def test_disconnect_closes_the_worker_generation(make_stack: Callable[..., Stack],
                                                 figures: list[str]) -> None:
    stack = make_stack().start_serving_fake("w")
    worker = stack.workers["w"]
    took: dict[str, float] = {}
    before = worker.stats()["aborted"]
    body = {"model": "fake", "stream": True, "messages": [{"role": "user", "content": SLOW}]}
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", stack.base_url + "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        for _ in range(4):
            next(lines)
    gone = time.monotonic()  # leaving the blocks closed the connection
    took["stream"] = _aborted_after(worker, before, gone)

    before = worker.stats()["aborted"]
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and hangs up
        httpx.post(stack.base_url + "/v1/chat/completions", timeout=1.0, json={
            "model": "fake", "messages": [{"role": "user", "content": SLOW}]})
    gone = time.monotonic()
    took["non-stream"] = _aborted_after(worker, before, gone)
    figures.append("client disconnect -> worker generation closed: " + ", ".join(
        f"{kind} {seconds * 1000:.0f} ms" for kind, seconds in took.items()))
    assert all(seconds < 1.5 for seconds in took.values()), took  # target 500 ms
