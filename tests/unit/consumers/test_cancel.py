"""Cancels: the fan-out and the mark for queued jobs, and when a dispatcher asks for marks."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from consumers.cancel import CLOCK_SKEW, CancelMarks, CancelPublisher, may_be_unheard
from contracts.jobs import Job, JobKind
from contracts.topology import Topology
from discovery.cache import MemoryCache

TOPOLOGY = Topology(namespace="t")


def _job(submitted: float, job_id: str = "j") -> Job:
    return Job(id=job_id, kind=JobKind.CHAT, model="m", prompts=["p"], deadline=submitted + 60,
               submitted=submitted)


@dataclass
class Source:
    cancels_heard_since: float


def test_only_jobs_older_than_the_cancel_consumer_are_looked_up() -> None:
    listening_since = time.time() - 60
    assert may_be_unheard(_job(listening_since - 10), listening_since)
    assert may_be_unheard(_job(listening_since + CLOCK_SKEW / 2), listening_since)
    assert not may_be_unheard(_job(listening_since + CLOCK_SKEW + 1), listening_since)


def test_every_job_is_looked_up_while_cancels_are_not_heard() -> None:
    assert may_be_unheard(_job(time.time()), math.inf)


async def test_a_cancel_is_fanned_out_and_marked_for_a_later_dispatcher() -> None:
    cache, published = MemoryCache(), []

    async def publish(job_id: str) -> None:
        published.append(job_id)

    canceller = CancelPublisher(publish, cache, TOPOLOGY)
    job = _job(time.time())
    canceller.cancel(job)
    await canceller.aclose()
    assert published == ["j"]
    # a dispatcher that was not listening when the cancel went out finds the mark
    assert await CancelMarks(Source(math.inf), cache, TOPOLOGY).cancelled_unheard(job)
    # one that heard every cancel since before the job was submitted does not even ask
    listening = CancelMarks(Source(job.submitted - 10), cache, TOPOLOGY)
    assert not await listening.cancelled_unheard(_job(time.time(), "other"))


async def test_a_failed_publish_does_not_stop_the_mark() -> None:
    cache = MemoryCache()

    async def publish(_job_id: str) -> None:
        raise ConnectionError("broker down")

    canceller = CancelPublisher(publish, cache, TOPOLOGY)
    job = _job(time.time())
    canceller.cancel(job)
    await canceller.aclose()
    assert await CancelMarks(Source(math.inf), cache, TOPOLOGY).cancelled_unheard(job)
