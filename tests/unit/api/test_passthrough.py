"""An upstream's output goes to the client as it came; the job carries the body as sent."""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request

from api.jobs import chat_job, parse_sent
from api.render import ChatRenderer, CompletionRenderer, embedding_body
from contracts.errors import ErrorDetail, error_from_detail
from contracts.jobs import ChoiceUpdate, Job, JobKind, Reply, ReplyKind
from contracts.openai.chat import ChatCompletionRequest


def request(body: bytes) -> Request:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": [
        (b"content-type", b"application/json")]}, receive)


def job(kind: JobKind = JobKind.CHAT, n: int = 1) -> Job:
    return Job(id="j", kind=kind, model="m", n=n, stream=True, deadline=time.time() + 30)


def reply(seq: int, kind: ReplyKind = ReplyKind.CHUNK, **fields: object) -> Reply:
    return Reply.model_validate({"job_id": "j", "attempt": "a", "seq": seq, "kind": kind,
                                 **fields})


async def test_the_job_carries_the_body_as_sent() -> None:
    raw = {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
        {"role": "tool", "content": "42", "tool_call_id": "c"}],
        "tools": [{"type": "function"}], "response_format": {"type": "json_schema"},
        "new_field": [1, {"x": None}]}
    body, sent = await parse_sent(request(orjson.dumps(raw)), ChatCompletionRequest)
    the_job = chat_job(body, timeout=10, sent=sent)
    assert the_job.body == raw
    assert Job.model_validate_json(the_job.model_dump_json()).body == raw


def test_passed_through_chunks_are_written_as_they_came() -> None:
    renderer = ChatRenderer(job())
    assert renderer.opening() == []
    chunk = '{"id":"up-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}'
    assert renderer.chunks(reply(0, chunks=[chunk, chunk])) == [
        b"data: " + chunk.encode() + b"\n\n"] * 2
    assert renderer.chunks(reply(1, ReplyKind.FINAL, chunks=[])) == []
    completion = CompletionRenderer(job(JobKind.COMPLETION))
    assert completion.chunks(reply(0, chunks=['{"a":1}'])) == [b'data: {"a":1}\n\n']


def test_a_worker_stream_opens_with_the_role_chunks_once() -> None:
    renderer = ChatRenderer(job(n=2))
    first = renderer.chunks(reply(0, choices=[ChoiceUpdate(index=0, text="hi")]))
    roles = [orjson.loads(e[6:])["choices"][0]["delta"] for e in first[:2]]
    assert roles == [{"role": "assistant", "content": ""}] * 2
    assert len(first) == 3
    assert len(renderer.chunks(reply(1, choices=[ChoiceUpdate(index=1, text="yo")]))) == 1


def test_a_passed_through_response_is_the_answer() -> None:
    whole = '{"id":"up","choices":[],"system_fingerprint":"fp"}'
    final = reply(0, ReplyKind.FINAL, body=whole)
    assert ChatRenderer(job()).complete([final]) == whole.encode()
    assert CompletionRenderer(job(JobKind.COMPLETION)).complete([final]) == whole.encode()
    assert embedding_body(job(JobKind.EMBEDDING), [final], encoding=None) == whole.encode()


def test_an_upstream_error_keeps_its_status() -> None:
    detail = ErrorDetail(message="too long", type="BadRequestError", code="400")
    error = error_from_detail(detail, 422)
    assert error.status_code == 422
    assert error.envelope().error == detail
    assert error_from_detail(detail, 429).retryable
