"""Waiting in a test for something to happen: a condition polled until it holds, bounded by a
timeout, and a failure that names what never happened.

``wait_until`` is for synchronous code (the processes a test starts, asked over HTTP, the broker
or their logs); ``eventually`` is for coroutines, and its predicate may be a coroutine function.
A timeout only bounds a failure, so it is generous: the suite runs on loaded machines.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(what: str, timeout: float, last: Exception | None,
               details: Callable[[], str] | None) -> AssertionError:
    message = f"timed out after {timeout:g}s waiting for {what}"
    if last is not None:
        message += f" (last: {last!r})"
    if details is not None:
        message += "\n" + details()
    return AssertionError(message)


def wait_until(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05,
               ignoring: tuple[type[Exception], ...] = (),
               details: Callable[[], str] | None = None) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something true, and return
    that. After ``timeout`` seconds raise AssertionError saying it waited for ``what``, with the
    last exception of the ``ignoring`` kinds the predicate raised (those count as "not yet") and
    ``details()`` (logs, say)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            result = predicate()
        except ignoring as exc:
            last = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last, details) from last
        time.sleep(interval)


async def eventually(predicate: Callable[[], bool | Awaitable[bool]], *,
                     timeout: float,  # noqa: ASYNC109 - a poll's bound, named when it fails
                     what: str, interval: float = 0.01,
                     details: Callable[[], str] | None = None) -> None:
    """``wait_until`` for coroutines: poll ``predicate`` (a function or a coroutine function)
    every ``interval`` seconds, letting the event loop run meanwhile, until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, None, details)
        await asyncio.sleep(interval)
