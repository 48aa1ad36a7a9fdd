"""Replies bound for the same api process, sent together in one broker message.

Every reply handed over while the event loop runs one round of ready work leaves in one
message, published by a task that starts on the next round: a lone reply waits for no company, and a
dispatcher serving many jobs at once sends one message per round instead of one per reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from contracts.jobs import Reply

Destination = TypeVar("Destination", bound=Hashable)
PublishBatch = Callable[[Destination, bytes], Awaitable[None]]
MAX_BATCH_BYTES = 512 * 1024  # past this a round's replies are split over several messages

_Pending = list[tuple[bytes, asyncio.Future[None]]]


def reply_batch_body(encoded: list[bytes]) -> bytes:
    """The JSON of a ``ReplyBatch`` holding the already-encoded replies."""
    return b'{"replies":[' + b",".join(encoded) + b"]}"


def _split(pending: _Pending, limit: int) -> list[_Pending]:
    chunks: list[_Pending] = [[]]
    size = 0
    for item in pending:
        if chunks[-1] and size + len(item[0]) > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item[0])
    return chunks


class ReplyOutbox(Generic[Destination]):
    """``publish(destination, body)`` sends one batch and returns once the broker took it.
    A destination is whatever names one api process's reply queue to the publisher."""

    def __init__(self, publish: PublishBatch[Destination], *,
                 max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        self._publish = publish
        self._limit = max_batch_bytes
        self._pending: dict[Destination, _Pending] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def send(self, destination: Destination, reply: Reply) -> None:
        """Returns once the message carrying ``reply`` is confirmed; raises its failure."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = self._pending.get(destination)
        if pending is None:
            # the task starts on the loop's next round: it takes what this round added
            pending = self._pending[destination] = []
            task = asyncio.create_task(self._flush(destination))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        pending.append((reply.model_dump_json().encode(), done))
        await done

    async def _flush(self, destination: Destination) -> None:
        pending = self._pending.pop(destination, [])
        if not pending:
            return
        first, *rest = _split(pending, self._limit)
        for chunk in rest:
            task = asyncio.create_task(self._send(destination, chunk))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        await self._send(destination, first)

    async def _send(self, destination: Destination, chunk: _Pending) -> None:
        try:
            await self._publish(destination, reply_batch_body([body for body, _ in chunk]))
        except asyncio.CancelledError:
            for _, done in chunk:
                done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every sender of the batch gets the failure
            for _, done in chunk:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, done in chunk:
            if not done.done():
                done.set_result(None)

    async def aclose(self) -> None:
        """Wait for the batches already on their way."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
