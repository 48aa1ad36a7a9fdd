from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from consumers.job_consumer import JobRunner
from consumers.transport import Delivery
from contracts.errors import NoWorkerError
from contracts.jobs import Job, JobKind, Reply, ReplyKind
from dispatcher.replies import ReplySink


@dataclass
class FakeService:
    """Stands in for DispatchService: one update, then the final reply, or a scripted fate."""

    delay: float = 0.0
    error: Exception | None = None
    ran: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, job: Job, sink: ReplySink) -> None:
        self.ran.append(job.id)
        self.started.set()
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        sink.push(0, "ok", "stop")
        await sink.finish(None)


@dataclass
class Settled:
    replies: list[Reply] = field(default_factory=list)
    acked: int = 0
    requeued: int = 0

    def delivery(self, job: Job, *, redelivered: bool = False) -> Delivery:
        async def reply(r: Reply) -> None:
            self.replies.append(r)

        async def ack() -> None:
            self.acked += 1

        async def requeue() -> None:
            self.requeued += 1

        return Delivery(job=job, attempt="x", redelivered=redelivered, delivery_count=0,
                        reply=reply, ack=ack, requeue=requeue)


def job(job_id: str = "j", *, deadline: float = 30, stream: bool = False) -> Job:
    return Job(id=job_id, kind=JobKind.CHAT, model="m", prompts=["p"], stream=stream,
               deadline=time.time() + deadline)


async def settle(runner: JobRunner) -> None:
    """Until every job the runner took has ended (none here runs for long)."""
    await runner.drain(grace=10)
    assert runner.in_flight == 0


async def test_job_is_acked_after_its_final_reply() -> None:
    service, settled = FakeService(), Settled()
    runner = JobRunner(service)
    await runner.handle(settled.delivery(job()))
    await settle(runner)
    assert [r.kind for r in settled.replies] == [ReplyKind.FINAL]
    assert settled.acked == 1


async def test_expired_job_is_never_run() -> None:
    service, settled = FakeService(), Settled()
    runner = JobRunner(service)
    await runner.handle(settled.delivery(job(deadline=-1)))
    await settle(runner)
    assert service.ran == []
    assert settled.replies[0].error is not None
    assert settled.replies[0].error.code == "deadline_exceeded"
    assert settled.acked == 1


async def test_job_cancelled_before_it_arrives_is_never_run() -> None:
    service, settled = FakeService(), Settled()
    runner = JobRunner(service)
    runner.cancel("j")
    await runner.handle(settled.delivery(job()))
    await settle(runner)
    assert service.ran == []
    assert settled.acked == 1


async def test_cancel_stops_a_running_job_and_acks_it() -> None:
    service, settled = FakeService(delay=5), Settled()
    runner = JobRunner(service)
    await runner.handle(settled.delivery(job()))
    await asyncio.wait_for(service.started.wait(), 5)
    runner.cancel("j")
    await settle(runner)
    assert settled.replies == []
    assert settled.acked == 1
    assert settled.requeued == 0


async def test_failure_becomes_an_error_reply() -> None:
    service, settled = FakeService(error=NoWorkerError("none")), Settled()
    runner = JobRunner(service)
    await runner.handle(settled.delivery(job()))
    await settle(runner)
    assert settled.replies[0].kind is ReplyKind.ERROR
    assert settled.acked == 1


async def test_unexpected_failure_is_reported_not_leaked() -> None:
    service, settled = FakeService(error=KeyError("secret detail")), Settled()
    runner = JobRunner(service)
    await runner.handle(settled.delivery(job()))
    await settle(runner)
    assert settled.replies[0].error is not None
    assert "secret" not in settled.replies[0].error.message
    assert settled.acked == 1


async def test_drain_requeues_what_does_not_finish_in_time() -> None:
    service, settled = FakeService(delay=5), Settled()
    runner = JobRunner(service)
    await runner.handle(settled.delivery(job("slow")))
    await asyncio.wait_for(service.started.wait(), 5)
    await runner.drain(0.05)
    assert settled.requeued == 1
    assert settled.acked == 0


async def test_redelivered_stream_announces_its_new_attempt() -> None:
    service, settled = FakeService(), Settled()
    runner = JobRunner(service)
    await runner.handle(settled.delivery(job(stream=True), redelivered=True))
    await settle(runner)
    assert settled.replies[0].kind is ReplyKind.STARTED
