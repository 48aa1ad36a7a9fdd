"""Trying a failed call again on another worker or entry: only what is marked retryable,
a bounded number of times within the job's deadline, with a short jittered wait."""

from __future__ import annotations

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from contracts.errors import MqgateError
from contracts.jobs import Job


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, MqgateError) and exc.retryable


def retries(job: Job, attempts: int) -> AsyncRetrying:
    """The tries after a first one failed retryably: ``attempts`` in all, the first counted."""
    return AsyncRetrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(attempts - 1) | stop_after_delay(max(job.remaining(), 0)),
        wait=wait_random_exponential(multiplier=0.02, max=0.25), reraise=True)
