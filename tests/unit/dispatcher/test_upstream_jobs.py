"""Jobs of models served by OpenAI-compatible upstreams: the request as sent, the output as
it comes, the upstream's errors kept, unreachable entries retried and skipped."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from bench.fake_upstream import FakeUpstream
from contracts.errors import NoWorkerError, UpstreamRejectedError, WorkerStreamError
from contracts.jobs import Job, JobKind, Reply, ReplyKind
from contracts.settings import Settings
from contracts.upstream import KeyRef, UpstreamEntry
from discovery.cache import MemoryCache
from discovery.controller import ControllerClient
from discovery.upstream_keys import UpstreamKeys
from dispatcher.replies import ReplySink
from dispatcher.service import DispatchService
from dispatcher.upstream_client import UpstreamClient
from dispatcher.upstream_jobs import UpstreamJobs
from dispatcher.upstreams import UpstreamDirectory
from runtime.servers import quiet_server, serve_in_background
from tests.unit.dispatcher.fakes import refused_address

TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


class Entries:
    """A controller that lists upstream entries of model "up"."""

    def __init__(self) -> None:
        self.entries: list[UpstreamEntry] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/list_upstreams":
            model = orjson.loads(request.content)["model"]
            return httpx.Response(200, json={"entries": [
                e.model_dump(mode="json") for e in self.entries if e.model_name == model]})
        return httpx.Response(404)


def entry(base: str, **fields: Any) -> UpstreamEntry:
    return UpstreamEntry(**{"id": base, "model_name": "up", "api_base": base,
                            "model": "served-name", "key": KeyRef(env="UP_KEY"), **fields})


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream(model="served-name", tokens=4, delay=0.0)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = quiet_server(fake, "127.0.0.1", port, log_level="warning", grace=1)
    task = await serve_in_background(server, sock)
    yield fake, f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    await task
    sock.close()


@pytest.fixture
def entries(upstream: tuple[FakeUpstream, str]) -> Entries:
    listed = Entries()
    listed.entries = [entry(upstream[1])]
    return listed


@pytest.fixture
async def jobs(entries: Entries) -> AsyncIterator[UpstreamJobs]:
    settings = Settings(namespace="unit", unhealthy_worker_ttl=60)
    controller = ControllerClient("http://controller", timeout=1,
                                  transport=httpx.MockTransport(entries))
    client = UpstreamClient(connect_timeout=1, read_timeout=5)
    directory = UpstreamDirectory(controller, MemoryCache(), settings,
                                  UpstreamKeys("", environ={"UP_KEY": "sk-up"}))
    yield UpstreamJobs(directory=directory, client=client, attempts=3)
    await client.aclose()
    await controller.aclose()


@pytest.fixture
def fake(upstream: tuple[FakeUpstream, str]) -> FakeUpstream:
    return upstream[0]


def job(body: dict[str, Any], kind: JobKind = JobKind.CHAT, **fields: Any) -> Job:
    return Job.model_validate({"id": "j", "kind": kind, "model": "up", "body": body,
                               "stream": bool(body.get("stream")),
                               "deadline": time.time() + 30, **fields})


async def run(jobs: UpstreamJobs, the_job: Job) -> list[Reply]:
    sent: list[Reply] = []

    async def send(reply: Reply) -> None:
        sent.append(reply)

    sink = ReplySink(job_id=the_job.id, attempt="a", stream=the_job.stream, send=send)
    await jobs.run(the_job, sink)
    return sent


def chunks(replies: list[Reply]) -> list[dict[str, Any]]:
    return [orjson.loads(c) for r in replies for c in r.chunks or []]


async def test_every_field_reaches_the_upstream_and_the_answer_comes_back_whole(
        jobs: UpstreamJobs, fake: FakeUpstream) -> None:
    body = {"model": "up", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                     {"type": "image_url", "image_url": {"url": "data:x"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c0", "type": "function", "function": {"name": "weather",
                                                          "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c0", "content": "sunny"}],
        "tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": False,
        "logit_bias": {"7": -100}, "seed": 3, "n": 1, "stop": ["\n"], "logprobs": False,
        "a_field_from_next_month": {"x": [1]}}
    replies = await run(jobs, job(body))
    sent = fake.stats["last"]
    assert sent == {**body, "model": "served-name", "stream": True,
                    "stream_options": {"include_usage": True}}
    assert fake.stats["authorization"] == "Bearer sk-up"
    (final,) = replies
    assert final.kind is ReplyKind.FINAL and final.body is not None
    response = orjson.loads(final.body)
    assert response["system_fingerprint"] == "fp_fake"
    assert response["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_fake0", "type": "function",
         "function": {"name": "weather", "arguments": '{"city":"fake"}'}}]
    assert response["choices"][0]["finish_reason"] == "tool_calls"
    assert final.usage is not None and final.usage.prompt_tokens == 8


async def test_a_stream_passes_each_chunk_and_the_usage_chunk_only_when_asked(
        jobs: UpstreamJobs) -> None:
    plain = chunks(await run(jobs, job({"messages": [{"role": "user", "content": "x"}],
                                        "stream": True})))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in plain) == (
        "tok0 tok1 tok2 tok3 ")
    assert all(c["choices"] and "usage" not in c for c in plain)
    asked = await run(jobs, job({"messages": [{"role": "user", "content": "x"}],
                                 "stream": True, "stream_options": {"include_usage": True}}))
    assert chunks(asked)[-1]["usage"]["total_tokens"] == 12
    assert asked[-1].kind is ReplyKind.FINAL and asked[-1].usage is not None


async def test_entry_defaults_fill_only_what_the_client_left_out(
        jobs: UpstreamJobs, entries: Entries, fake: FakeUpstream) -> None:
    entries.entries = [entries.entries[0].model_copy(
        update={"defaults": {"temperature": 0.1, "max_tokens": 5}})]
    await run(jobs, job({"messages": [{"role": "user", "content": "x"}],
                         "temperature": 0.9}))
    assert fake.stats["last"]["temperature"] == 0.9
    assert fake.stats["last"]["max_tokens"] == 5


async def test_an_upstream_4xx_keeps_its_status_and_error(jobs: UpstreamJobs) -> None:
    with pytest.raises(UpstreamRejectedError) as caught:
        await run(jobs, job({"messages": [{"role": "user", "content": "[[status=400]]"}]}))
    assert caught.value.status_code == 400
    assert caught.value.detail().code == "fake_code"
    assert caught.value.detail().message == "the fake upstream answers 400"


async def test_an_unreachable_entry_is_retried_on_another_and_then_skipped(
        jobs: UpstreamJobs, entries: Entries, fake: FakeUpstream) -> None:
    live = entries.entries[0]
    entries.entries = [entry(refused_address() + "/v1"), live]
    for i in range(6):
        replies = await run(jobs, job({"messages": [{"role": "user", "content": "x"}]},
                                      id=f"j{i}"))
        assert replies[-1].body is not None
    assert fake.stats["requests"] == 6


async def test_no_reachable_entry_is_no_worker(jobs: UpstreamJobs, entries: Entries) -> None:
    entries.entries = [entry(refused_address() + "/v1"), entry(refused_address() + "/v1")]
    with pytest.raises(NoWorkerError):
        await run(jobs, job({"messages": [{"role": "user", "content": "x"}]}))


async def test_a_stream_that_breaks_after_output_fails(jobs: UpstreamJobs) -> None:
    with pytest.raises(WorkerStreamError):
        await run(jobs, job({"messages": [{"role": "user", "content": "[[die-after=3]]"}],
                             "stream": True}))
    with pytest.raises(WorkerStreamError, match="failed mid-stream"):
        await run(jobs, job({"messages": [{"role": "user", "content": "[[error-after=2]]"}],
                             "stream": True}))


async def test_max_parallel_requests_bounds_the_calls_at_once(
        jobs: UpstreamJobs, entries: Entries, fake: FakeUpstream) -> None:
    entries.entries = [entries.entries[0].model_copy(update={"max_parallel_requests": 1})]
    body = {"messages": [{"role": "user", "content": "[[delay=0.01]]"}]}
    await asyncio.gather(*(run(jobs, job(body, id=f"j{i}")) for i in range(4)))
    assert fake.stats["requests"] == 4
    assert fake.stats["max_active"] == 1


async def test_token_ids_and_dimensions_pass_through(jobs: UpstreamJobs,
                                                     fake: FakeUpstream) -> None:
    (final,) = await run(jobs, job({"input": [[1, 2, 3]], "dimensions": 3},
                                   kind=JobKind.EMBEDDING))
    assert final.body is not None
    assert orjson.loads(final.body)["data"][0]["embedding"] == [0.125] * 3
    assert fake.stats["last"] == {"input": [[1, 2, 3]], "dimensions": 3,
                                  "model": "served-name"}
    (final,) = await run(jobs, job({"prompt": [5, 6], "logprobs": 1},
                                   kind=JobKind.COMPLETION))
    assert final.body is not None
    choice = orjson.loads(final.body)["choices"][0]
    assert choice["text"] == "tok0 tok1 tok2 tok3 "
    assert choice["logprobs"]["tokens"] == ["tok0 ", "tok1 ", "tok2 ", "tok3 "]


async def test_the_service_sends_upstream_models_to_upstreams(
        service: DispatchService, jobs: UpstreamJobs, fake: FakeUpstream) -> None:
    routed = dataclasses.replace(service, upstreams=jobs)
    sent: list[Reply] = []

    async def send(reply: Reply) -> None:
        sent.append(reply)

    the_job = job({"messages": [{"role": "user", "content": "x"}], "tools": TOOLS})
    await routed.run(the_job, ReplySink(job_id="j", attempt="a", stream=False, send=send))
    assert sent[-1].body is not None
    assert fake.stats["requests"] == 1


async def test_a_token_check_counts_at_the_upstream_and_reads_its_context_length(
        jobs: UpstreamJobs) -> None:
    (final,) = await run(jobs, job({}, kind=JobKind.TOKEN_CHECK, prompts=["a b c"]))
    assert final.token_count is not None
    assert final.token_count.count == 8  # the fake upstream's prompt_tokens
    assert final.token_count.context_length == 4096  # its /v1/models' max_model_len


async def test_a_context_length_in_the_config_file_comes_first(jobs: UpstreamJobs,
                                                               entries: Entries) -> None:
    entries.entries = [entries.entries[0].model_copy(update={"context_length": 1024})]
    (final,) = await run(jobs, job({}, kind=JobKind.TOKEN_CHECK, prompts=["a b c"]))
    assert final.token_count is not None and final.token_count.context_length == 1024


async def test_a_429_is_tried_on_another_entry_else_passed_on(
        jobs: UpstreamJobs, entries: Entries, fake: FakeUpstream) -> None:
    body = {"messages": [{"role": "user", "content": "[[status=429]]"}]}
    entries.entries = [entries.entries[0], entry(entries.entries[0].api_base, id="second")]
    with pytest.raises(UpstreamRejectedError) as caught:
        await run(jobs, job(body))
    assert caught.value.status_code == 429
    assert fake.stats["requests"] == 2  # both entries were asked
