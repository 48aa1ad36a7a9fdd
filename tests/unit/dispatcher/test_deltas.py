from __future__ import annotations

from contracts.fastchat import WorkerFrame
from contracts.openai.common import LogProbs
from dispatcher.deltas import DeltaTracker


def test_cumulative_text_becomes_deltas() -> None:
    tracker = DeltaTracker()
    updates = [tracker.update(WorkerFrame(text=t)) for t in ("He", "Hell", "Hell", "Hello")]
    assert [u.text if u else None for u in updates] == ["He", "ll", None, "o"]


def test_partial_utf8_is_held_back() -> None:
    tracker = DeltaTracker()
    first = tracker.update(WorkerFrame(text="caf\ufffd"))
    second = tracker.update(WorkerFrame(text="café"))
    assert first is not None and first.text == "caf"
    assert second is not None and second.text == "é"


def test_finish_without_new_text_is_still_reported() -> None:
    tracker = DeltaTracker()
    tracker.update(WorkerFrame(text="done"))
    last = tracker.update(WorkerFrame(text="done", finish_reason="length"))
    assert last is not None and last.text == "" and last.finish_reason == "length"


def test_logprobs_become_deltas_too() -> None:
    tracker = DeltaTracker()
    a = tracker.update(WorkerFrame(text="a", logprobs=LogProbs(tokens=["a"],
                                                               token_logprobs=[-1.0])))
    b = tracker.update(WorkerFrame(text="ab", logprobs=LogProbs(tokens=["a", "b"],
                                                                token_logprobs=[-1.0, -2.0])))
    assert a is not None and a.logprobs is not None and a.logprobs.tokens == ["a"]
    assert b is not None and b.logprobs is not None and b.logprobs.tokens == ["b"]
    assert b.logprobs.token_logprobs == [-2.0]
