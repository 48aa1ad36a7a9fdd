"""Routes replies, by job id, to the request waiting for them."""

from __future__ import annotations

import asyncio
import logging

from contracts.jobs import Reply

log = logging.getLogger(__name__)


class ReplyOverflowError(Exception):
    """The client reads replies slower than they arrive and the buffer is full."""


class Subscription:
    def __init__(self, router: ReplyRouter, job_id: str, size: int) -> None:
        self.job_id = job_id
        self._router = router
        self._queue: asyncio.Queue[Reply | BaseException] = asyncio.Queue(maxsize=size)

    def put(self, item: Reply | BaseException) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._router.unsubscribe(self.job_id)
            self._drain_and_fail(ReplyOverflowError("reply buffer full"))

    def _drain_and_fail(self, exc: BaseException) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(exc)

    async def get(self, limit: float) -> Reply:
        """The next reply; TimeoutError after ``limit`` seconds with none."""
        async with asyncio.timeout(max(limit, 0.0)):
            item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._router.unsubscribe(self.job_id)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ReplyRouter:
    def __init__(self, buffer: int = 4096) -> None:
        self._buffer = buffer
        self._waiting: dict[str, Subscription] = {}
        self.late_replies = 0

    def subscribe(self, job_id: str) -> Subscription:
        sub = Subscription(self, job_id, self._buffer)
        self._waiting[job_id] = sub
        return sub

    def unsubscribe(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)

    def deliver(self, reply: Reply) -> None:
        sub = self._waiting.get(reply.job_id)
        if sub is None:
            self.late_replies += 1
            return
        sub.put(reply)

    def fail_all(self, exc: BaseException) -> None:
        for sub in list(self._waiting.values()):
            sub.put(exc)

    def __len__(self) -> int:
        return len(self._waiting)
