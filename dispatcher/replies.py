"""Numbering, coalescing and sending one attempt's replies.

Updates are merged per choice while a send is in flight, so a fast stream costs one message
per broker round trip rather than one per token; the first update goes out at once. A
non-streamed job sends a single final reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from contracts.errors import ErrorDetail, MqgateError, UpstreamRejectedError
from contracts.jobs import ChoiceUpdate, Reply, ReplyKind, TokenCount
from contracts.openai.common import LogProbs, Usage

SendReply = Callable[[Reply], Awaitable[None]]


class _Pending:
    """Output of one choice not sent yet; cheap to add to, turned into a model when sent."""

    __slots__ = ("finish_reason", "logprobs", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.logprobs: LogProbs | None = None

    def add(self, text: str, finish_reason: str | None, logprobs: LogProbs | None) -> None:
        if text:
            self.parts.append(text)
        if finish_reason is not None:
            self.finish_reason = finish_reason
        if logprobs is not None:
            self.logprobs = logprobs if self.logprobs is None else self.logprobs.joined(logprobs)

    def update(self, index: int) -> ChoiceUpdate:
        # built without validation: every field comes from this process, typed
        return ChoiceUpdate.model_construct(index=index, text="".join(self.parts),
                                            finish_reason=self.finish_reason,
                                            logprobs=self.logprobs)


class ReplySink:
    """``interval`` is the least time between two chunk messages of a stream after the first:
    output that arrives meanwhile goes out together, which bounds the message rate per stream
    whatever the token rate."""

    def __init__(self, *, job_id: str, attempt: str, stream: bool, send: SendReply,
                 interval: float = 0.0) -> None:
        self._job_id = job_id
        self._attempt = attempt
        self._stream = stream
        self._send = send
        self._interval = interval
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._passed: list[str] | None = None  # an upstream's chunks, passed through as sent
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()  # one message at a time, in sequence order
        self._failure: BaseException | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def _emit(self, kind: ReplyKind, choices: list[ChoiceUpdate], usage: Usage | None = None,
                    embeddings: list[str] | None = None,
                    error: ErrorDetail | None = None,
                    token_count: TokenCount | None = None, status: int | None = None,
                    body: str | None = None) -> None:
        chunks, self._passed = self._passed, None if self._passed is None else []
        reply = Reply.model_construct(job_id=self._job_id, attempt=self._attempt, seq=self._seq,
                                      kind=kind, choices=choices, usage=usage,
                                      embeddings=embeddings, error=error,
                                      token_count=token_count, status=status, chunks=chunks,
                                      body=body)
        self._seq += 1
        await self._send(reply)

    async def started(self) -> None:
        await self._emit(ReplyKind.STARTED, [])

    def push(self, index: int, text: str = "", finish_reason: str | None = None,
             logprobs: LogProbs | None = None) -> None:
        """Queue output of choice ``index``; raises if an earlier send failed (the api may be
        gone)."""
        if self._failure is not None:
            raise self._failure
        pending = self._pending.get(index)
        if pending is None:
            pending = self._pending[index] = _Pending()
        pending.add(text, finish_reason, logprobs)
        if self._stream:
            self._wake.set()
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush_loop())

    def pass_chunk(self, chunk: str) -> None:
        """Queue an upstream's stream chunk (an SSE event's data) for the client as it is;
        raises if an earlier send failed. Every reply of the job then carries ``chunks``."""
        if self._failure is not None:
            raise self._failure
        if self._passed is None:
            self._passed = []
        self._passed.append(chunk)
        self._wake.set()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop())

    def _take(self) -> list[ChoiceUpdate]:
        choices = [self._pending[i].update(i) for i in sorted(self._pending)]
        self._pending.clear()
        return choices

    async def _flush_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                async with self._sending:
                    if self._pending or self._passed:
                        await self._emit(ReplyKind.CHUNK, self._take())
                if self._interval:
                    await asyncio.sleep(self._interval)
        except Exception as exc:  # noqa: BLE001 - handed to the producer on its next push
            self._failure = exc

    async def _stop_flusher(self) -> None:
        """Stop the flusher between two messages, never in the middle of one."""
        if self._flusher is not None:
            async with self._sending:
                self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
            self._flusher = None

    async def finish(self, usage: Usage | None, embeddings: list[str] | None = None,
                     token_count: TokenCount | None = None, body: str | None = None) -> None:
        """The final reply, carrying whatever output is still pending (``body``: an
        upstream's whole response, passed through)."""
        await self._stop_flusher()
        if self._failure is not None:
            raise self._failure
        await self._emit(ReplyKind.FINAL, self._take(), usage=usage, embeddings=embeddings,
                         token_count=token_count, body=body)

    async def fail(self, error: MqgateError) -> None:
        """Send the error as this attempt's last reply; output not yet sent is dropped. An
        upstream's own error keeps its status."""
        await self._stop_flusher()
        self._pending.clear()
        if self._passed is not None:
            self._passed.clear()
        status = error.status_code if isinstance(error, UpstreamRejectedError) else None
        await self._emit(ReplyKind.ERROR, [], error=error.detail(), status=status)

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
