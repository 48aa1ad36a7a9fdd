"""Sustained mixed load: every request ends exactly once with its own text."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable

import aio_pika
import aiohttp
import pytest

from contracts.settings import Settings
from tests.conftest import AMQP_URL
from tests.e2e.prompts import vicuna
from tests.fakeworker import expected_text
from tests.stack import Stack

pytestmark = pytest.mark.faults

SECONDS = float(os.environ.get("MQGATE_FAULT_LOAD_SECONDS", "60"))
CLIENTS = 24


async def _one(session: aiohttp.ClientSession, url: str, rid: str, stream: bool,
               outcomes: Counter[str], texts: dict[str, list[str]]) -> None:
    content = f"load-{rid} [[tokens=6]]"
    body = {"model": "fake", "stream": stream,
            "messages": [{"role": "user", "content": content}]}
    async with session.post(url, json=body) as response:
        raw = await response.read()
    outcomes[str(response.status)] += 1
    if response.status != 200:
        return
    if stream:
        events = [e for e in raw.decode().split("\n\n") if e]
        if events[-1] != "data: [DONE]":
            outcomes["unterminated"] += 1
        text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "")
                       for e in events[:-1] if e.startswith('data: {"id"'))
    else:
        text = json.loads(raw)["choices"][0]["message"]["content"]
    texts.setdefault(rid, []).append(text)
    if text != expected_text(vicuna(content))[0]:
        outcomes["cross_talk_or_corrupt"] += 1


async def _load(base: str) -> tuple[Counter[str], dict[str, list[str]], int]:
    outcomes: Counter[str] = Counter()
    texts: dict[str, list[str]] = {}
    sent = 0
    deadline = time.monotonic() + SECONDS
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def client(k: int) -> None:
            nonlocal sent
            i = 0
            while time.monotonic() < deadline:
                rid = f"{k}-{i}"
                i += 1
                sent += 1
                await _one(session, base + "/v1/chat/completions", rid, i % 2 == 0,
                           outcomes, texts)

        await asyncio.gather(*(client(k) for k in range(CLIENTS)))
    return outcomes, texts, sent


def test_sustained_mixed_load_loses_and_repeats_nothing(
        make_stack: Callable[..., Stack], figures: list[str]) -> None:
    stack = make_stack().start_serving_fake("a", "b", dispatchers=2)
    outcomes, texts, sent = asyncio.run(_load(stack.base_url))
    answered = sum(len(v) for v in texts.values())
    figures.append(f"sustained load {SECONDS:.0f}s: {sent} requests, {dict(outcomes)}")
    assert sent > CLIENTS * 10
    assert outcomes["200"] == sent  # nothing lost, no 4xx or 5xx
    assert answered == sent
    assert all(len(v) == 1 for v in texts.values())  # nothing answered twice
    assert outcomes["cross_talk_or_corrupt"] == 0
    assert outcomes["unterminated"] == 0
    assert asyncio.run(queue_depths(stack.namespace)) == (0, 0)  # nothing left behind


async def queue_depths(namespace: str) -> tuple[int, int]:
    """Messages left in the model's lane and in the dead-letter queue."""
    topology = Settings(namespace=namespace).topology
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        counts = []
        for name in (topology.lane("fake"), topology.dead_letter_queue):
            queue = await channel.declare_queue(name, passive=True)
            counts.append(int(queue.declaration_result.message_count or 0))
        return counts[0], counts[1]
    finally:
        await connection.close()
