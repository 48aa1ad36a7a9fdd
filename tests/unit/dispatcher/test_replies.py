from __future__ import annotations

import asyncio

import pytest

from contracts.errors import NoWorkerError
from contracts.jobs import Reply, ReplyKind
from contracts.openai.common import Usage
from dispatcher.replies import ReplySink


class SlowBroker:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.sent: list[Reply] = []
        self.delay = delay
        self.fail = fail
        self.refused = asyncio.Event()  # set as a failing send raises

    async def send(self, reply: Reply) -> None:
        await asyncio.sleep(self.delay)  # a broker round trip
        if self.fail:
            self.refused.set()
            raise ConnectionError("api gone")
        self.sent.append(reply)


async def test_fast_updates_are_coalesced_and_the_first_goes_at_once() -> None:
    broker = SlowBroker(delay=0.02)
    sink = ReplySink(job_id="j", attempt="a", stream=True, send=broker.send)
    sink.push(0, "first")
    await asyncio.sleep(0)  # one turn of the loop: the flusher picks the first update up at once
    for i in range(50):
        sink.push(0, f" {i}")
    await sink.finish(Usage(prompt_tokens=1, completion_tokens=51, total_tokens=52))
    assert broker.sent[0].choices[0].text == "first"
    assert len(broker.sent) <= 4
    assert [r.seq for r in broker.sent] == list(range(len(broker.sent)))
    text = "".join(c.text for r in broker.sent for c in r.choices)
    assert text == "first" + "".join(f" {i}" for i in range(50))
    assert broker.sent[-1].kind is ReplyKind.FINAL
    assert broker.sent[-1].usage is not None


async def test_choices_keep_their_own_text() -> None:
    broker = SlowBroker()
    sink = ReplySink(job_id="j", attempt="a", stream=True, send=broker.send)
    sink.push(1, "b")
    sink.push(0, "a")
    sink.push(1, "b", "stop")
    await sink.finish(None)
    by_index: dict[int, str] = {}
    for reply in broker.sent:
        for choice in reply.choices:
            by_index[choice.index] = by_index.get(choice.index, "") + choice.text
    assert by_index == {0: "a", 1: "bb"}


async def test_non_stream_job_sends_one_final_reply() -> None:
    broker = SlowBroker()
    sink = ReplySink(job_id="j", attempt="a", stream=False, send=broker.send)
    for part in ("a", "b", "c"):
        sink.push(0, part)
    await sink.finish(Usage())
    assert len(broker.sent) == 1
    assert broker.sent[0].kind is ReplyKind.FINAL
    assert broker.sent[0].choices[0].text == "abc"


async def test_a_failed_send_stops_the_producer() -> None:
    broker = SlowBroker(fail=True)
    sink = ReplySink(job_id="j", attempt="a", stream=True, send=broker.send)
    sink.push(0, "x")
    # the sink takes the failure in as the send raises, before this test runs again
    await asyncio.wait_for(broker.refused.wait(), 10)
    with pytest.raises(ConnectionError):
        sink.push(0, "y")
    await sink.aclose()


async def test_error_reply_carries_the_error() -> None:
    broker = SlowBroker()
    sink = ReplySink(job_id="j", attempt="a", stream=True, send=broker.send)
    await sink.fail(NoWorkerError("none"))
    assert broker.sent[0].kind is ReplyKind.ERROR
    assert broker.sent[0].error is not None
    assert broker.sent[0].error.code == "no_worker_available"


async def test_upstream_chunks_travel_in_order_and_every_reply_carries_them() -> None:
    broker = SlowBroker()
    sink = ReplySink(job_id="j", attempt="a", stream=True, send=broker.send)
    for i in range(20):
        sink.pass_chunk(f'{{"n":{i}}}')
    await sink.finish(Usage(prompt_tokens=1))
    passed = [c for r in broker.sent for c in r.chunks or []]
    assert passed == [f'{{"n":{i}}}' for i in range(20)]
    assert all(r.chunks is not None for r in broker.sent)
    assert broker.sent[-1].kind is ReplyKind.FINAL
