from __future__ import annotations

import base64
import struct
import time

import orjson
import pytest

from contracts.errors import ContextLengthError, DeadlineExceededError, NoWorkerError, WorkerError
from contracts.jobs import Job, JobKind, JobMessage, Reply, ReplyKind, SamplingParams
from dispatcher.replies import ReplySink
from dispatcher.service import DispatchService
from tests.unit.dispatcher.fakes import (
    Scripted,
    ScriptedController,
    ScriptedWorkers,
    refused_address,
)


def chat(**overrides: object) -> Job:
    fields: dict[str, object] = {
        "id": "j1", "kind": JobKind.CHAT, "model": "m",
        "messages": [JobMessage(role="user", content="hi")],
        "params": SamplingParams(max_tokens=10), "deadline": time.time() + 30}
    fields.update(overrides)
    return Job.model_validate(fields)


async def run(service: DispatchService, job: Job) -> list[Reply]:
    sent: list[Reply] = []

    async def send(reply: Reply) -> None:
        sent.append(reply)

    sink = ReplySink(job_id=job.id, attempt="a", stream=job.stream, send=send)
    await service.run(job, sink)
    return sent


async def test_chat_job_renders_the_prompt_and_answers(service: DispatchService,
                                                      scripted_workers: ScriptedWorkers) -> None:
    replies = await run(service, chat())
    assert scripted_workers.bodies[0]["prompt"] == " U: hi A:"
    assert scripted_workers.bodies[0]["max_new_tokens"] == 10
    assert replies[-1].kind is ReplyKind.FINAL
    assert replies[-1].choices[0].text == "hello"
    assert replies[-1].choices[0].finish_reason == "stop"
    assert replies[-1].usage is not None and replies[-1].usage.total_tokens == 5


async def test_dead_worker_is_retried_on_the_other(
        service: DispatchService, scripted_controller: ScriptedController,
        addresses: list[str]) -> None:
    scripted_controller.workers["m"] = [refused_address(), addresses[0]]
    for i in range(5):
        replies = await run(service, chat(id=f"j{i}"))
        assert replies[-1].choices[0].text == "hello"


async def test_all_workers_dead_is_no_worker(service: DispatchService,
                                             scripted_controller: ScriptedController) -> None:
    scripted_controller.workers["m"] = [refused_address(), refused_address()]
    with pytest.raises(NoWorkerError):
        await run(service, chat())


async def test_failure_after_output_is_not_retried(service: DispatchService,
                                                   scripted_workers: ScriptedWorkers) -> None:
    scripted_workers.stream_for = lambda _a, _b: Scripted(
        [orjson.dumps({"text": "par", "error_code": 0}) + b"\0"], cut=True)
    with pytest.raises(WorkerError):
        await run(service, chat())
    assert len(scripted_workers.bodies) == 1


async def test_worker_error_frame(service: DispatchService,
                                  scripted_workers: ScriptedWorkers) -> None:
    def failing(code: int) -> Scripted:
        return Scripted([orjson.dumps({"text": "bad", "error_code": code}) + b"\0"])

    for code, cls in ((50001, WorkerError), (40303, ContextLengthError)):
        scripted_workers.stream_for = lambda _a, _b, c=code: failing(c)  # type: ignore[misc]
        with pytest.raises(cls):
            await run(service, chat())


async def test_prompt_too_long_for_the_context(service: DispatchService,
                                              scripted_workers: ScriptedWorkers) -> None:
    scripted_workers.context_length = 4
    with pytest.raises(ContextLengthError):
        await run(service, chat(messages=[JobMessage(role="user", content="a b c d e f")]))
    assert scripted_workers.bodies == []


async def test_end_of_body_without_finish_reason_means_stop(
        service: DispatchService, scripted_workers: ScriptedWorkers) -> None:
    scripted_workers.stream_for = lambda _a, _b: Scripted(
        [orjson.dumps({"text": "x", "error_code": 0}) + b"\0"])
    replies = await run(service, chat())
    assert replies[-1].choices[0].finish_reason == "stop"


async def test_expired_deadline(service: DispatchService) -> None:
    with pytest.raises(DeadlineExceededError):
        await run(service, chat(deadline=time.time() - 1))


async def test_embeddings_are_batched_in_order(service: DispatchService,
                                               scripted_workers: ScriptedWorkers) -> None:
    job = Job(id="e", kind=JobKind.EMBEDDING, model="m", prompts=["a", "bb", "ccc", "dddd", "e"],
              deadline=time.time() + 30)
    replies = await run(service, job)
    packed = replies[-1].embeddings or []
    vectors = [struct.unpack("<f", base64.b64decode(v)) for v in packed]
    assert vectors == [(1.0,), (2.0,), (3.0,), (4.0,), (1.0,)]
    calls = sum(v for k, v in scripted_workers.calls.items() if k.endswith("embeddings"))
    assert calls == 3  # batches of 2, 2 and 1
    assert replies[-1].usage is not None and replies[-1].usage.prompt_tokens == 5
