"""Chat completions through the whole stack, driven by the official SDK and raw HTTP."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.e2e.prompts import chatml, vicuna
from tests.fakeworker import expected_text
from tests.stack import Stack

pytestmark = pytest.mark.e2e


def last_prompt(stack: Stack, model_workers: tuple[str, ...]) -> list[str]:
    return [stack.workers[w].stats()["last_params"].get("prompt", "") for w in model_workers]


def test_chat_answer_is_exact_and_openai_shaped(client: openai.OpenAI, stack: Stack) -> None:
    reply = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "hello there friend"}])
    text, finish = expected_text(vicuna("hello there friend"))
    assert reply.choices[0].message.content == text
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == finish
    assert reply.object == "chat.completion"
    assert reply.model == "fake"
    assert reply.id.startswith("chatcmpl-")
    assert reply.created > 0
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 8


def test_prompt_follows_the_worker_template(client: openai.OpenAI, stack: Stack) -> None:
    messages = [{"role": "system", "content": "Be terse."},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": [{"type": "text", "text": "part one"},
                                             {"type": "text", "text": "part two"}]}]
    reply = client.chat.completions.create(model="chatml-model", messages=messages)  # type: ignore[arg-type]
    prompt = chatml("first question", "first answer", "part one\npart two", system="Be terse.")
    assert stack.workers["chatml"].stats()["last_params"]["prompt"] == prompt
    assert reply.choices[0].message.content == expected_text(prompt, stop=["<|im_end|>"])[0]


def test_generation_parameters_reach_the_worker(client: openai.OpenAI, stack: Stack) -> None:
    client.chat.completions.create(
        model="chatml-model", messages=[{"role": "user", "content": "params please"}],
        temperature=0.3, top_p=0.9, presence_penalty=0.5, frequency_penalty=-0.5, seed=7,
        max_tokens=5, stop=["zzz", "yyy"], user="someone",
        extra_body={"top_k": 4, "unknown_field": {"is": "ignored"}})
    params = stack.workers["chatml"].stats()["last_params"]
    assert params["temperature"] == 0.3
    assert params["top_p"] == 0.9
    assert params["top_k"] == 4
    assert params["presence_penalty"] == 0.5
    assert params["frequency_penalty"] == -0.5
    assert params["seed"] == 7
    assert params["max_new_tokens"] == 5
    assert params["echo"] is False
    assert params["stop"] == ["zzz", "yyy", "<|im_end|>"]


def test_defaults_follow_fastchat(client: openai.OpenAI, stack: Stack) -> None:
    client.chat.completions.create(model="chatml-model",
                                   messages=[{"role": "user", "content": "defaults"}])
    params = stack.workers["chatml"].stats()["last_params"]
    prompt_tokens = len(params["prompt"].split()) + 1
    assert params["temperature"] == 0.7
    assert params["top_p"] == 1.0
    assert params["top_k"] == -1
    assert params["max_new_tokens"] == 2048 - prompt_tokens  # the rest of the context


def test_max_tokens_ends_with_length(client: openai.OpenAI) -> None:
    for limit in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        reply = client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "count to ten"}],
            extra_body=limit)
        assert reply.choices[0].finish_reason == "length"
        assert reply.choices[0].message.content == expected_text(vicuna("count to ten"), 3)[0]
        assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_request_stop_string_cuts_the_answer(client: openai.OpenAI) -> None:
    prompt = vicuna("alpha beta gamma")
    full, _ = expected_text(prompt)
    reply = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "alpha beta gamma"}], stop="beta")
    assert reply.choices[0].message.content == full[:full.index("beta")]
    assert reply.choices[0].finish_reason == "stop"


def test_n_choices_count_the_prompt_once(client: openai.OpenAI) -> None:
    single = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "three of them"}])
    reply = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "three of them"}], n=3)
    text, _ = expected_text(vicuna("three of them"))
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.content == text for c in reply.choices)
    assert reply.usage is not None and single.usage is not None
    assert reply.usage.prompt_tokens == single.usage.prompt_tokens
    assert reply.usage.completion_tokens == 3 * single.usage.completion_tokens


def test_stream_with_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "stream me [[delay=0.01]]"}],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text, finish = expected_text(vicuna("stream me [[delay=0.01]]"))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == finish and all(f is None for f in finishes[:-1])
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" and c.created > 0 and c.model == "fake"
               for c in chunks)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    assert len(chunks) > 3  # delayed tokens arrive as several chunks, not one


def test_stream_framing_and_headers(http: httpx.Client) -> None:
    body = {"model": "fake", "stream": True, "messages": [{"role": "user", "content": "frame"}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ")
        data = json.loads(event[len("data: "):])
        assert {"id", "object", "created", "model", "choices"} <= data.keys()
    assert "usage" not in json.loads(events[-3][len("data: "):])


def test_stream_interleaves_n_choices(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "two [[delay=0.02]]"}],
        stream=True, n=2)
    texts = {0: "", 1: ""}
    finishes: dict[int, str | None] = {}
    order: list[int] = []
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            order.append(choice.index)
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    expected, finish = expected_text(vicuna("two [[delay=0.02]]"))
    assert texts == {0: expected, 1: expected}
    assert finishes == {0: finish, 1: finish}
    first_end = max(i for i, idx in enumerate(order) if idx == 0)
    assert any(idx == 1 for idx in order[:first_end])  # choice 1 began before choice 0 ended


def test_worker_error_mid_stream_is_one_error_event(http: httpx.Client) -> None:
    body = {"model": "fake", "stream": True,
            "messages": [{"role": "user", "content": "please [[delay=0.05]] [[error]]"}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        events = [e for e in response.read().decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2][len("data: "):])
    assert set(error) == {"error"}
    assert error["error"]["type"] == "server_error"
    assert "50001" in error["error"]["message"]


def test_worker_error_without_stream_is_a_5xx(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={
        "model": "fake", "messages": [{"role": "user", "content": "please [[error]]"}]})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "worker_error"


def test_raw_string_messages_are_the_prompt(http: httpx.Client, stack: Stack) -> None:
    response = http.post("/v1/chat/completions", json={"model": "chatml-model",
                                                       "messages": "raw prompt text"})
    assert response.status_code == 200
    assert stack.workers["chatml"].stats()["last_params"]["prompt"] == "raw prompt text"


def test_fastchat_api_routes(http: httpx.Client, stack: Stack) -> None:
    response = http.post("/api/v1/chat/completions", json={
        "model": "chatml-model", "repetition_penalty": 1.2,
        "messages": [{"role": "user", "content": "fastchat route"}]})
    assert response.status_code == 200
    assert stack.workers["chatml"].stats()["last_params"]["repetition_penalty"] == 1.2
    checked = http.post("/api/v1/token_check", json={"prompts": [
        {"model": "tiny", "prompt": "a b c", "max_tokens": 10},
        {"model": "tiny", "prompt": "a b c", "max_tokens": 61}]})
    assert checked.status_code == 200
    assert checked.json() == {"prompts": [
        {"fits": True, "tokenCount": 4, "contextLength": 64},
        {"fits": False, "tokenCount": 4, "contextLength": 64}]}
    unknown = http.post("/api/v1/token_check", json={"prompts": [
        {"model": "nope", "prompt": "x", "max_tokens": 1}]})
    assert unknown.status_code == 404
    assert httpx.post(stack.base_url + "/api/v1/token_check", json={"prompts": []},
                      timeout=10).status_code == 401
