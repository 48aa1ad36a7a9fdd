"""The broker restarts under load: 503 at once during the outage, recovery on its own, and
every request that was accepted ends exactly once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import aiohttp
import pytest

from tests.e2e.prompts import vicuna
from tests.fakeworker import expected_text
from tests.faults.rabbit import PrivateRabbit, start_private_rabbit
from tests.stack import Stack
from tests.waiting import wait_until

pytestmark = pytest.mark.faults

CLIENTS = 8


@pytest.fixture(scope="module")
def rabbit(services: None) -> Iterator[PrivateRabbit]:
    node = start_private_rabbit()
    yield node
    node.shutdown()


class Ledger:
    def __init__(self) -> None:
        self.outcomes: dict[str, list[tuple[float, int, float]]] = {}
        self.lock = threading.Lock()

    def record(self, rid: str, started: float, status: int) -> None:
        with self.lock:
            self.outcomes.setdefault(rid, []).append((started, status, time.monotonic()))

    def clients_served(self, since: float) -> set[str]:
        """The clients that had an answer (200) to a request they sent after ``since``."""
        with self.lock:
            return {rid.split("-")[0] for rid, answers in self.outcomes.items()
                    for started, status, _ended in answers if status == 200 and started > since}


async def _load(base: str, ledger: Ledger, stop: threading.Event, bad: Counter[str]) -> None:
    timeout = aiohttp.ClientTimeout(total=40)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def client(k: int) -> None:
            i = 0
            while not stop.is_set():
                rid = f"{k}-{i}"
                i += 1
                content = f"restart-{rid} [[delay=0.05]] [[tokens=4]]"
                started = time.monotonic()
                try:
                    async with session.post(base + "/v1/chat/completions", json={
                            "model": "fake",
                            "messages": [{"role": "user", "content": content}]}) as response:
                        body = await response.json(content_type=None)
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                    body = {}
                ledger.record(rid, started, status)
                if status == 200 and body["choices"][0]["message"]["content"] != expected_text(
                        vicuna(content))[0]:
                    bad["cross_talk"] += 1
                if status != 200:
                    await asyncio.sleep(0.05)  # the client pauses before its next request

        await asyncio.gather(*(client(k) for k in range(CLIENTS)))


def test_broker_restart_mid_load(rabbit: PrivateRabbit, make_stack: Callable[..., Stack],
                                 figures: list[str]) -> None:
    stack = make_stack(MQGATE_AMQP_URL=rabbit.url, MQGATE_REQUEST_TIMEOUT="20",
                       MQGATE_PUBLISH_TIMEOUT="1")
    stack.start_serving_fake("w")
    ledger, stop, bad = Ledger(), threading.Event(), Counter[str]()
    runner = threading.Thread(target=lambda: asyncio.run(_load(stack.base_url, ledger, stop,
                                                               bad)))
    loaded_at = time.monotonic()
    runner.start()
    try:
        wait_until(lambda: len(ledger.clients_served(loaded_at)) == CLIENTS, timeout=30,
                   what="every client to be served before the outage", details=stack.logs)
        rabbit.stop_app()
        down_at = time.monotonic()
        time.sleep(2)  # the outage, the behaviour under test: meanwhile requests get 503 at once
        restart_at = time.monotonic()
        rabbit.start_app()
        up_at = time.monotonic()
        wait_until(lambda: len(ledger.clients_served(up_at)) == CLIENTS, timeout=40,
                   what="every client to be served again once the broker was back",
                   details=stack.logs)
    finally:
        stop.set()
        runner.join(60)
    assert not runner.is_alive()
    outcomes = ledger.outcomes
    assert all(len(v) == 1 for v in outcomes.values())  # one answer per request, never two
    assert bad["cross_talk"] == 0
    statuses = Counter(status for v in outcomes.values() for _s, status, _e in v)
    assert statuses[0] == 0  # no connection error or client timeout: nothing hung
    assert set(statuses) <= {200, 502, 503, 504}
    during = [(s, st, e) for v in outcomes.values() for s, st, e in v
              if down_at + 0.2 < s < restart_at]
    assert during and all(st == 503 and e - s < 2.5 for s, st, e in during)
    first_ok = min(s for v in outcomes.values() for s, st, _e in v if st == 200 and s > up_at)
    assert first_ok - up_at < 3.0
    assert statuses[200] > 0
    figures.append(f"broker restart: {dict(statuses)}; during the outage {len(during)} requests "
                   f"got 503 in at most {max(e - s for s, _st, e in during) * 1000:.0f} ms; "
                   f"first success {first_ok - up_at:.2f} s after the broker returned")
