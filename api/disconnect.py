"""Racing a wait against the client going away, for waits before a response starts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientDisconnectedError(Exception):
    """The client closed the connection before the answer was ready."""


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, or stop it and raise ClientDisconnectedError if the client leaves.

    The work runs in the calling task; only the watcher is a task of its own, and it cancels
    the caller when the client goes."""
    caller = asyncio.current_task()
    assert caller is not None
    waiting, left = True, False

    def client_left(watcher: asyncio.Task[None]) -> None:
        nonlocal left
        if waiting and not watcher.cancelled() and watcher.exception() is None:
            left = True
            caller.cancel()

    watcher = asyncio.create_task(_disconnected(request))
    watcher.add_done_callback(client_left)
    try:
        return await work
    except asyncio.CancelledError:
        if left and caller.uncancel() == 0:
            raise ClientDisconnectedError from None
        raise
    finally:
        waiting = False
        watcher.cancel()
