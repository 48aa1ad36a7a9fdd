"""Steady open-loop load for fault tests: requests start at a fixed rate whatever the answers
take, some streamed, and every one is written down with how it ended."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from tests.e2e.prompts import vicuna
from tests.fakeworker import expected_text


@dataclass
class Outcome:
    """One request: when it started and ended (monotonic clock), its HTTP status (0 when no
    answer came: a connection error or the client's timeout) and how it ended: ``ok`` (the
    whole expected text; a stream ended by ``[DONE]``), ``error_event`` (a stream ended by an
    error event), ``http_error`` (a status other than 200), ``no_answer``, ``wrong_text``
    or ``unterminated`` (a stream that stopped without ``[DONE]``)."""

    rid: str
    stream: bool
    started: float
    ended: float = 0.0
    status: int = 0
    end: str = "no_answer"
    answers: int = 0  # complete HTTP answers read (one at most, by HTTP; checked all the same)


@dataclass
class OpenLoad:
    """``rate`` requests a second for ``seconds`` against ``base_url``, in a thread of its
    own; every ``stream_every``-th streamed. ``prompt`` marks change the fake worker's pace."""

    base_url: str
    rate: float
    seconds: float
    stream_every: int = 3
    plain_marks: str = "[[tokens=4]]"
    stream_marks: str = "[[tokens=10]] [[delay=0.05]]"
    timeout: float = 60.0
    outcomes: list[Outcome] = field(default_factory=list)
    started_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> OpenLoad:
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def join(self) -> None:
        assert self._thread is not None
        self._thread.join(self.seconds + self.timeout + 30)
        assert not self._thread.is_alive(), "the load never finished"

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def first_success_after(self, moment: float) -> float | None:
        """When the first request started at or after ``moment`` ended well, if one has."""
        ends = [o.ended for o in self.snapshot() if o.started >= moment and o.end == "ok"]
        return min(ends, default=None)

    def successes_after(self, moment: float) -> int:
        return sum(o.started >= moment and o.end == "ok" for o in self.snapshot())

    def counts(self) -> Counter[str]:
        """How requests ended, by kind (plain or stream) and end (the status of HTTP
        errors)."""
        return Counter(f"{'stream' if o.stream else 'plain'} {o.end}"
                       f"{f' {o.status}' if o.end == 'http_error' else ''}"
                       for o in self.snapshot())

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks = []
            total = int(self.rate * self.seconds)
            for i in range(total):
                delay = self.started_at + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # the schedule: the load is open loop
                tasks.append(asyncio.create_task(self._one(session, i)))
            await asyncio.gather(*tasks)

    async def _one(self, session: aiohttp.ClientSession, i: int) -> None:
        stream = i % self.stream_every == 0
        content = f"load-{i} {self.stream_marks if stream else self.plain_marks}"
        outcome = Outcome(rid=str(i), stream=stream, started=time.monotonic())
        with self._lock:
            self.outcomes.append(outcome)
        body = {"model": "fake", "stream": stream,
                "messages": [{"role": "user", "content": content}]}
        try:
            async with session.post(self.base_url + "/v1/chat/completions",
                                    json=body) as response:
                raw = await response.read()
                outcome.status = response.status
        except (aiohttp.ClientError, TimeoutError):
            outcome.ended = time.monotonic()
            return
        outcome.answers += 1
        outcome.end = _judged(outcome.status, raw, stream, expected_text(vicuna(content))[0])
        outcome.ended = time.monotonic()


def _judged(status: int, raw: bytes, stream: bool, expected: str) -> str:
    if status != 200:
        return "http_error"
    try:
        if not stream:
            text = json.loads(raw)["choices"][0]["message"]["content"]
            return "ok" if text == expected else "wrong_text"
        events = [e[len("data: "):] for e in raw.decode().split("\n\n")
                  if e.startswith("data: ")]
        chunks = [json.loads(e) for e in events if e != "[DONE]"]
    except (ValueError, KeyError, IndexError, TypeError):
        return "wrong_text"
    if any("error" in c for c in chunks):
        return "error_event"
    if not events or events[-1] != "[DONE]":
        return "unterminated"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c.get("choices"))
    return "ok" if text == expected else "wrong_text"
