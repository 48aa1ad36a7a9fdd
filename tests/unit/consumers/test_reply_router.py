from __future__ import annotations

import pytest

from consumers.reply_router import ReplyOverflowError, ReplyRouter
from contracts.jobs import Reply, ReplyKind


def reply(job_id: str, seq: int = 0) -> Reply:
    return Reply(job_id=job_id, attempt="a", seq=seq, kind=ReplyKind.CHUNK)


async def test_replies_reach_only_their_own_waiter() -> None:
    router = ReplyRouter()
    with router.subscribe("a") as a, router.subscribe("b") as b:
        router.deliver(reply("b"))
        router.deliver(reply("a"))
        assert (await a.get(1)).job_id == "a"
        assert (await b.get(1)).job_id == "b"
    assert len(router) == 0


async def test_late_replies_are_counted_and_dropped() -> None:
    router = ReplyRouter()
    router.deliver(reply("gone"))
    assert router.late_replies == 1


async def test_wait_has_a_limit() -> None:
    router = ReplyRouter()
    with router.subscribe("a") as a, pytest.raises(TimeoutError):
        await a.get(0.01)


async def test_a_full_buffer_fails_the_waiter() -> None:
    router = ReplyRouter(buffer=16)
    sub = router.subscribe("a")
    for i in range(17):
        router.deliver(reply("a", i))
    with pytest.raises(ReplyOverflowError):
        await sub.get(1)
    assert len(router) == 0
