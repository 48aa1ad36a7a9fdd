"""The api's view of whether dispatchers consume jobs, and requests that no dispatcher takes."""

from __future__ import annotations

import asyncio
import time

import pytest

from api.dispatchers import DispatcherWatch
from api.gateway import ReplyReader
from consumers.reply_router import ReplyRouter
from contracts.errors import NoDispatcherError
from contracts.jobs import ChoiceUpdate, Job, JobKind, Reply, ReplyKind
from contracts.settings import Settings
from tests.waiting import eventually


class Broker:
    """Answers how many dispatchers consume, and counts the questions."""

    def __init__(self, consumers: int | None) -> None:
        self.consumers = consumers
        self.asked = 0

    async def count(self) -> int | None:
        self.asked += 1
        return self.consumers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watch(broker: Broker, *, wait: float, grace: float, clock: Clock | None = None,
          fresh: float = 60.0) -> DispatcherWatch:
    return DispatcherWatch(broker.count, queue="ns.jobs", wait=wait, grace=grace, fresh=fresh,
                           clock=clock or time.monotonic)


async def settle(broker: Broker, asked: int) -> None:
    """Until the broker has been asked ``asked`` times in all: the watch takes each answer in as
    it comes (the fake answers without suspending), so the background question is over."""
    await eventually(lambda: broker.asked == asked, timeout=10,
                     what=f"the watch to have asked the broker {asked} times")


async def test_with_dispatchers_present_only_the_first_job_asks_the_broker() -> None:
    broker = Broker(2)
    dispatchers = watch(broker, wait=15, grace=30)
    for _ in range(100):
        publication = await dispatchers.publishing()
        publication.check()
    assert broker.asked == 1
    assert await dispatchers.listening()


async def test_a_stale_answer_is_refreshed_in_the_background() -> None:
    broker, clock = Broker(1), Clock()
    dispatchers = watch(broker, wait=15, grace=30, clock=clock, fresh=1.0)
    await dispatchers.publishing()
    clock.now += 2
    broker.consumers = 0
    publication = await dispatchers.publishing()
    assert not publication.unattended  # published on what was known, without waiting
    await settle(broker, 2)
    assert broker.asked == 2
    assert dispatchers.absent


async def test_a_job_published_with_no_dispatcher_is_given_up_after_the_wait() -> None:
    broker, clock = Broker(0), Clock()
    dispatchers = watch(broker, wait=15, grace=30, clock=clock)
    publication = await dispatchers.publishing()
    assert publication.unattended
    clock.now += 14.9
    publication.check()
    clock.now += 0.2
    with pytest.raises(NoDispatcherError, match=r"ns\.jobs"):
        publication.check()


async def test_a_dispatcher_that_comes_back_in_time_keeps_the_job() -> None:
    broker, clock = Broker(0), Clock()
    dispatchers = watch(broker, wait=15, grace=30, clock=clock)
    publication = await dispatchers.publishing()
    clock.now += 5
    broker.consumers = 1
    publication.check()  # asks the broker again, in the background
    await settle(broker, 2)
    clock.now += 60
    publication.check()
    assert not dispatchers.absent


async def test_a_job_a_stopping_dispatcher_may_hold_gets_its_grace_first() -> None:
    broker, clock = Broker(1), Clock()
    dispatchers = watch(broker, wait=15, grace=30, clock=clock, fresh=1.0)
    publication = await dispatchers.publishing()
    clock.now += 2
    broker.consumers = 0
    publication.check()
    await settle(broker, 2)
    assert dispatchers.absent  # gone since now
    clock.now += 44.9
    publication.check()
    clock.now += 0.2
    with pytest.raises(NoDispatcherError):
        publication.check()


async def test_a_broker_that_cannot_say_is_not_an_absence() -> None:
    broker = Broker(None)
    dispatchers = watch(broker, wait=0, grace=0)
    publication = await dispatchers.publishing()
    publication.check()
    assert not await dispatchers.listening()
    assert "cannot say" in dispatchers.why()


def reader(router: ReplyRouter) -> ReplyReader:
    job = Job(id="j", kind=JobKind.CHAT, model="m", prompts=["p"],
              deadline=time.time() + 30)
    return ReplyReader(job, router.subscribe("j"), Settings(), lambda _job, _reason: None)


async def test_a_reader_gives_up_a_job_that_no_dispatcher_takes() -> None:
    dispatchers = watch(Broker(0), wait=0.2, grace=30)
    router = ReplyRouter()
    replies = reader(router)
    replies.publication = await dispatchers.publishing()
    with pytest.raises(NoDispatcherError):
        await replies.final()


async def test_a_reader_takes_the_answer_of_a_dispatcher_that_came_back() -> None:
    broker = Broker(0)
    dispatchers = watch(broker, wait=30, grace=30)
    router = ReplyRouter()
    replies = reader(router)
    replies.publication = await dispatchers.publishing()
    waiting = asyncio.create_task(replies.final())
    broker.consumers = 1
    router.deliver(Reply(job_id="j", attempt="a", seq=0, kind=ReplyKind.FINAL,
                         choices=[ChoiceUpdate(index=0, text="hi", finish_reason="stop")]))
    assert [r.choices[0].text for r in await waiting] == ["hi"]


async def test_keepalives_tick_while_a_dispatcher_is_awaited() -> None:
    dispatchers = watch(Broker(0), wait=30, grace=30)
    replies = reader(ReplyRouter())
    replies.publication = await dispatchers.publishing()
    assert await replies.next(keepalive=0.01) is None
