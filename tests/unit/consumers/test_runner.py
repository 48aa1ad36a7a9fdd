from __future__ import annotations

import math
import time

from consumers.runner import CLOCK_SKEW, cancel_may_be_unheard
from contracts.jobs import Job, JobKind


def _job(submitted: float) -> Job:
    return Job(id="j", kind=JobKind.CHAT, model="m", prompts=["p"], deadline=submitted + 60,
               submitted=submitted)


def test_only_jobs_older_than_the_cancel_consumer_are_looked_up() -> None:
    listening_since = time.time() - 60
    assert cancel_may_be_unheard(_job(listening_since - 10), listening_since)
    assert cancel_may_be_unheard(_job(listening_since + CLOCK_SKEW / 2), listening_since)
    assert not cancel_may_be_unheard(_job(listening_since + CLOCK_SKEW + 1), listening_since)


def test_every_job_is_looked_up_while_cancels_are_not_heard() -> None:
    assert cancel_may_be_unheard(_job(time.time()), math.inf)
