"""Turning a worker's cumulative text into the deltas a client sees."""

from __future__ import annotations

from typing import NamedTuple

from contracts.fastchat import WorkerFrame
from contracts.openai.common import LogProbs


class Delta(NamedTuple):
    text: str
    finish_reason: str | None
    logprobs: LogProbs | None


class DeltaTracker:
    """Tracks one choice of one generation, as FastChat's server does.

    U+FFFD (half of a multi-byte character) is stripped; text only advances when it grows.
    """

    def __init__(self) -> None:
        self.text = ""
        self._logprob_tokens = 0

    def update(self, frame: WorkerFrame) -> Delta | None:
        text = frame.text.replace("\ufffd", "")
        delta = text[len(self.text):]
        if len(text) > len(self.text):
            self.text = text
        logprobs = None
        if frame.logprobs is not None and len(frame.logprobs.tokens) > self._logprob_tokens:
            logprobs = frame.logprobs.since(self._logprob_tokens)
            self._logprob_tokens = len(frame.logprobs.tokens)
        if not delta and frame.finish_reason is None and logprobs is None:
            return None
        return Delta(delta, frame.finish_reason, logprobs)
