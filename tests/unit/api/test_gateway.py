from __future__ import annotations

import time

import pytest

from api.gateway import CancelReason, ReplyReader
from consumers.reply_router import ReplyRouter
from contracts.errors import DeadlineExceededError, NoWorkerError, WorkerStreamError
from contracts.jobs import ChoiceUpdate, Job, JobKind, Reply, ReplyKind
from contracts.settings import Settings

ABANDONED: list[tuple[str, CancelReason]] = []


def setup(deadline: float = 10) -> tuple[ReplyRouter, ReplyReader]:
    router = ReplyRouter()
    job = Job(id="j", kind=JobKind.CHAT, model="m", prompts=["p"], stream=True,
              deadline=time.time() + deadline)
    ABANDONED.clear()
    return router, ReplyReader(job, router.subscribe("j"), Settings(stream_idle_timeout=0.2),
                               lambda job, reason: ABANDONED.append((job.id, reason)))


def chunk(attempt: str, seq: int, text: str = "x", kind: ReplyKind = ReplyKind.CHUNK) -> Reply:
    return Reply(job_id="j", attempt=attempt, seq=seq, kind=kind,
                 choices=[ChoiceUpdate(index=0, text=text)] if kind is not ReplyKind.STARTED
                 else [])


async def test_a_new_attempt_after_output_ends_the_stream() -> None:
    router, reader = setup()
    router.deliver(chunk("a", 0))
    router.deliver(chunk("b", 0, kind=ReplyKind.STARTED))
    assert (await reader.first()).attempt == "a"
    with pytest.raises(WorkerStreamError):
        await reader.next()


async def test_a_new_attempt_before_output_takes_over() -> None:
    router, reader = setup()
    router.deliver(chunk("a", 0, kind=ReplyKind.STARTED))
    router.deliver(chunk("b", 0, kind=ReplyKind.STARTED))
    router.deliver(chunk("b", 1, "from b"))
    router.deliver(chunk("a", 1, "late from a"))
    router.deliver(chunk("b", 2, "more", kind=ReplyKind.FINAL))
    assert (await reader.first()).choices[0].text == "from b"
    assert (await reader.first()).choices[0].text == "more"


async def test_a_gap_in_sequence_is_an_error() -> None:
    router, reader = setup()
    router.deliver(chunk("a", 0))
    router.deliver(chunk("a", 2))
    await reader.first()
    with pytest.raises(WorkerStreamError):
        await reader.next()


async def test_error_reply_raises_the_typed_error() -> None:
    router, reader = setup()
    router.deliver(Reply(job_id="j", attempt="a", seq=0, kind=ReplyKind.ERROR,
                         error=NoWorkerError("none").detail()))
    with pytest.raises(NoWorkerError):
        await reader.next()


async def test_deadline_and_idle_limits() -> None:
    _router, reader = setup(deadline=0.05)
    with pytest.raises(DeadlineExceededError):
        await reader.next()
    router, reader = setup()
    router.deliver(chunk("a", 0))
    await reader.first()
    with pytest.raises(WorkerStreamError):
        await reader.next()  # idle for longer than 0.2 s after output


async def test_keepalive_ticks_while_waiting() -> None:
    _router, reader = setup()
    assert await reader.next(keepalive=0.01) is None


async def test_a_job_that_ended_is_not_cancelled_when_its_reader_closes() -> None:
    router, reader = setup()
    router.deliver(chunk("a", 0, kind=ReplyKind.FINAL))
    with reader:
        await reader.final()
    assert ABANDONED == []
    assert len(router) == 0


async def test_a_dispatcher_error_ends_the_job_so_nothing_is_cancelled() -> None:
    router, reader = setup()
    router.deliver(Reply(job_id="j", attempt="a", seq=0, kind=ReplyKind.ERROR,
                         error=NoWorkerError("none").detail()))
    with pytest.raises(NoWorkerError), reader:
        await reader.final()
    assert ABANDONED == []


async def test_a_job_given_up_or_left_by_its_client_is_cancelled_once() -> None:
    router, reader = setup(deadline=0.05)
    with pytest.raises(DeadlineExceededError), reader:
        await reader.final()
    reader.close()
    assert ABANDONED == [("j", CancelReason.GIVEN_UP)]
    assert len(router) == 0
    _router, reader = setup()
    reader.close(client_gone=True)
    assert ABANDONED == [("j", CancelReason.CLIENT_GONE)]
