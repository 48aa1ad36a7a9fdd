"""Redis behind Sentinel: the primary is killed under load. Every request is served, every
process follows the failover, and the controller's registry is there after it: what the
replica had, and what it missed (a registration the primary never replicated) restored by the
worker's next heart beat."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fakeworker import HEART_BEAT_INTERVAL
from tests.faults.openload import OpenLoad
from tests.faults.sentinel import PRIMARY_NAME, SentinelSetup, redis_with_sentinels
from tests.stack import Stack
from tests.waiting import wait_until

pytestmark = pytest.mark.faults

RATE = 30.0
SECONDS = 30.0


@pytest.fixture
def sentinels(services: None) -> Iterator[SentinelSetup]:
    with redis_with_sentinels() as setup:
        yield setup


def registered(stack: Stack) -> set[str]:
    """The workers of model "fake" in the controller's registry."""
    answer = httpx.post(stack.controller_url + "/get_worker_addresses", json={"model": "fake"},
                        timeout=5)
    answer.raise_for_status()
    return set(answer.json()["addresses"])


def test_redis_primary_killed_under_load(sentinels: SentinelSetup,
                                         make_stack: Callable[..., Stack],
                                         figures: list[str]) -> None:
    stack = make_stack(MQGATE_REDIS_SENTINELS=sentinels.addresses,
                       MQGATE_REDIS_PRIMARY_NAME=PRIMARY_NAME,
                       MQGATE_REDIS_URL="redis://sentinel-knows-where/0",  # host not used
                       MQGATE_CACHE_TTL="1",
                       MQGATE_WORKER_CONCURRENCY="64")  # the fake worker takes any number
    stack.start_serving_fake("w1", dispatchers=2)
    first = stack.workers["w1"].url
    load = OpenLoad(stack.base_url, rate=RATE, seconds=SECONDS).start()
    try:
        wait_until(lambda: load.successes_after(load.started_at) >= 60, timeout=30,
                   what="the load to be served")
        # a write that the replica never gets: its link cut, a second worker registers
        sentinels.replica.hang()
        sentinels.primary.command("CLIENT", "KILL", "TYPE", "replica")
        second = stack.start_worker("w2", ["fake"]).url
        wait_until(lambda: second in registered(stack), timeout=10, ignoring=(httpx.HTTPError,),
                   what="the second worker to register")
        sentinels.primary.kill()
        sentinels.replica.resume()
        killed = time.monotonic()
        wait_until(lambda: sentinels.primary_port() == sentinels.replica.port, timeout=30,
                   interval=0.1, what="the sentinels to promote the replica")
        promoted = time.monotonic()
        after_failover = wait_until(lambda: registered(stack), timeout=10,
                                    interval=0.1, ignoring=(httpx.HTTPError,),
                                    what="the controller to answer from the new primary")
        answered = time.monotonic()
        wait_until(lambda: second in registered(stack), timeout=5 * HEART_BEAT_INTERVAL,
                   interval=0.1, ignoring=(httpx.HTTPError,),
                   what="the second worker's heart beat to register it again")
        restored = time.monotonic()
    finally:
        load.join()
    outcomes = load.snapshot()
    counts = load.counts()
    figures.append(
        f"redis sentinel: primary killed under {RATE:.0f} requests/s: {len(outcomes)} requests,"
        f" {dict(counts)}; replica promoted {promoted - killed:.1f}s after the kill, the "
        f"controller answered from it {answered - promoted:.2f}s later, listing "
        f"{len(after_failover)} of 2 workers; the lost registration was back "
        f"{restored - answered:.1f}s after that (heart beats every {HEART_BEAT_INTERVAL:g}s)")
    assert first in after_failover  # what the replica had is there
    assert all(o.end == "ok" for o in outcomes), counts  # every request served
    assert registered(stack) == {first, second}
