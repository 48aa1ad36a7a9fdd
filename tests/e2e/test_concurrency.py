"""Many streams at once, cancellation reaching the worker, worker failover."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from tests.e2e.prompts import vicuna
from tests.fakeworker import expected_text
from tests.stack import Stack
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


async def test_64_concurrent_streams_have_no_cross_talk(aclient: openai.AsyncOpenAI) -> None:
    async def one(i: int) -> tuple[str, str]:
        content = f"request-{i} unique-{i * 7919} [[delay=0.01]] [[tokens=12]]"
        stream = await aclient.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": content}], stream=True)
        text = ""
        async for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
        return text, expected_text(vicuna(content))[0]

    async with aclient:
        results = await asyncio.gather(*(one(i) for i in range(64)))
    for got, want in results:
        assert got == want


def _fake_stats(stack: Stack) -> dict[str, int]:
    """Counters summed over the two workers of model "fake"."""
    total: dict[str, int] = {}
    for name in ("a", "b"):
        for key, value in stack.workers[name].stats().items():
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value
    return total


def test_closing_a_stream_stops_the_worker(stack: Stack, http: httpx.Client) -> None:
    before = _fake_stats(stack)
    body = {"model": "fake", "stream": True, "messages": [
        {"role": "user", "content": "long [[delay=0.1]] [[tokens=200]]"}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]
        assert any("content" in line for line in received)
    closed_at = time.monotonic()
    wait_until(lambda: _fake_stats(stack)["aborted"] > before["aborted"], timeout=10,
               what="a worker to see the stream's generation closed")
    took = time.monotonic() - closed_at
    after = _fake_stats(stack)
    assert after["active"] == 0
    assert after["completed"] == before["completed"]
    assert took < 2.0, f"the worker kept generating for {took:.2f}s"


def test_abandoned_non_stream_request_stops_the_worker(stack: Stack) -> None:
    before = _fake_stats(stack)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(stack.base_url + "/v1/completions", headers=stack.headers(),
                   timeout=httpx.Timeout(1.0), json={"model": "fake", "max_tokens": 500,
                                                     "prompt": "slow [[delay=0.1]] [[tokens=200]]"})
    wait_until(lambda: _fake_stats(stack)["aborted"] > before["aborted"], timeout=10,
               what="a worker to see the abandoned request's generation closed")
    assert _fake_stats(stack)["completed"] == before["completed"]


def test_dead_worker_is_skipped_for_a_live_one(client: openai.OpenAI, stack: Stack) -> None:
    # "dual" is served by worker a and by an address where nothing listens
    for i in range(12):
        reply = client.chat.completions.create(
            model="dual", messages=[{"role": "user", "content": f"failover {i}"}])
        assert reply.choices[0].message.content == expected_text(vicuna(f"failover {i}"))[0]


def test_load_is_spread_over_the_workers_of_a_model(aclient: openai.AsyncOpenAI,
                                                    stack: Stack) -> None:
    a, b = stack.workers["a"], stack.workers["b"]
    before = (a.stats()["started"], b.stats()["started"])

    async def burst() -> None:
        async with aclient:
            await asyncio.gather(*(aclient.chat.completions.create(
                model="fake", messages=[{"role": "user", "content": f"spread {i} [[delay=0.02]]"}])
                for i in range(24)))

    asyncio.run(burst())
    got_a = a.stats()["started"] - before[0]
    got_b = b.stats()["started"] - before[1]
    assert got_a + got_b == 24
    assert got_a >= 4 and got_b >= 4
