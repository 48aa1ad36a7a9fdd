from __future__ import annotations

import asyncio

import pytest

from consumers.reply_outbox import ReplyOutbox
from contracts.jobs import Reply, ReplyBatch, ReplyKind


def reply(job_id: str, seq: int = 0, text: str = "") -> Reply:
    return Reply.model_validate({"job_id": job_id, "attempt": "a", "seq": seq,
                                 "kind": ReplyKind.CHUNK,
                                 "choices": [{"index": 0, "text": text}]})


class Broker:
    def __init__(self, *, fail: Exception | None = None) -> None:
        self.sent: list[tuple[str, ReplyBatch]] = []
        self.fail = fail

    async def publish(self, destination: str, body: bytes) -> None:
        await asyncio.sleep(0)  # a publish takes at least a turn of the loop
        if self.fail is not None:
            raise self.fail
        self.sent.append((destination, ReplyBatch.model_validate_json(body)))


async def test_replies_of_one_round_share_a_message_per_destination() -> None:
    broker = Broker()
    outbox = ReplyOutbox(broker.publish)
    await asyncio.gather(outbox.send("api-1", reply("a")), outbox.send("api-1", reply("b")),
                         outbox.send("api-2", reply("c")))
    assert sorted((d, [r.job_id for r in b.replies]) for d, b in broker.sent) == [
        ("api-1", ["a", "b"]), ("api-2", ["c"])]


async def test_a_lone_reply_leaves_at_once_and_order_is_kept() -> None:
    broker = Broker()
    outbox = ReplyOutbox(broker.publish)
    for seq in range(3):
        await outbox.send("api", reply("a", seq))
    assert [[r.seq for r in b.replies] for _, b in broker.sent] == [[0], [1], [2]]


async def test_a_failed_publish_fails_every_reply_it_carried() -> None:
    outbox = ReplyOutbox(Broker(fail=TimeoutError()).publish)
    results = await asyncio.gather(outbox.send("api", reply("a")),
                                   outbox.send("api", reply("b")), return_exceptions=True)
    assert [type(r) for r in results] == [TimeoutError, TimeoutError]


async def test_a_large_round_is_split_over_several_messages() -> None:
    broker = Broker()
    outbox = ReplyOutbox(broker.publish, max_batch_bytes=300)
    await asyncio.gather(*(outbox.send("api", reply(f"j{i}", text="x" * 100))
                           for i in range(5)))
    carried = [[r.job_id for r in b.replies] for _, b in broker.sent]
    assert len(carried) > 1
    assert sorted(j for batch in carried for j in batch) == [f"j{i}" for i in range(5)]


async def test_a_sender_that_gives_up_does_not_break_the_others() -> None:
    broker = Broker()
    outbox = ReplyOutbox(broker.publish)
    waiting = asyncio.ensure_future(outbox.send("api", reply("gone")))
    staying = asyncio.ensure_future(outbox.send("api", reply("stays")))
    await asyncio.sleep(0)  # one round of the loop: both replies are handed over, one batch
    waiting.cancel()
    await staying
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await outbox.aclose()
    assert [r.job_id for r in broker.sent[0][1].replies] == ["gone", "stays"]
