"""Stream chunks merged into the response of a client that did not stream."""

from __future__ import annotations

from typing import Any

import orjson

from dispatcher.upstream_output import Aggregate

TOP = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
       "system_fingerprint": "fp_1"}


def chunk(*choices: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**TOP, "choices": list(choices), **top}


def merged(chunks: list[dict[str, Any]], *, chat: bool = True) -> dict[str, Any]:
    aggregate = Aggregate(chat=chat)
    for c in chunks:
        aggregate.add(orjson.loads(orjson.dumps(c)))
    result: dict[str, Any] = orjson.loads(aggregate.body())
    return result


def test_text_deltas_and_top_level_fields() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
             "prompt_tokens_details": {"cached_tokens": 1}}
    response = merged([
        chunk({"index": 0, "delta": {"role": "assistant", "content": ""}}),
        chunk({"index": 0, "delta": {"content": "Hel"}, "logprobs": {"content": [
            {"token": "Hel", "logprob": -0.1, "top_logprobs": []}]}}),
        chunk({"index": 0, "delta": {"content": "lo", "reasoning_content": "because"},
               "logprobs": {"content": [{"token": "lo", "logprob": -0.2,
                                         "top_logprobs": []}]}}),
        chunk({"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": 42}),
        chunk(usage=usage, service_tier="default"),
    ])
    assert response["id"] == "chatcmpl-1"
    assert response["object"] == "chat.completion"
    assert response["system_fingerprint"] == "fp_1"
    assert response["service_tier"] == "default"
    assert response["usage"] == usage
    (choice,) = response["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Hello",
                                 "reasoning_content": "because"}
    assert [t["token"] for t in choice["logprobs"]["content"]] == ["Hel", "lo"]
    assert choice["finish_reason"] == "stop"
    assert choice["stop_reason"] == 42


def test_tool_calls_are_assembled_by_index_across_chunks() -> None:
    response = merged([
        chunk({"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function",
             "function": {"name": "weather", "arguments": ""}}]}}),
        chunk({"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": '{"city": '}},
            {"index": 1, "id": "call_b", "type": "function",
             "function": {"name": "time", "arguments": '{"tz"'}}]}}),
        chunk({"index": 0, "delta": {"tool_calls": [
            {"index": 1, "function": {"arguments": ': "UTC"}'}}]}}),
        chunk({"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": '"Paris"}'}}]}}),
        chunk({"index": 0, "delta": {}, "finish_reason": "tool_calls"}),
    ])
    message = response["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "call_a", "type": "function",
         "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_b", "type": "function",
         "function": {"name": "time", "arguments": '{"tz": "UTC"}'}}]
    assert response["choices"][0]["finish_reason"] == "tool_calls"


def test_a_name_repeated_in_every_delta_is_not_doubled() -> None:
    """llama.cpp's server repeats id, type and name in each delta of a call."""
    call = {"index": 0, "id": "call_x", "type": "function", "function": {"name": "f"}}
    response = merged([
        chunk({"index": 0, "delta": {"tool_calls": [
            {**call, "function": {"name": "f", "arguments": "{"}}],
            "function_call": {"name": "f", "arguments": "{"}}}),
        chunk({"index": 0, "delta": {"tool_calls": [
            {**call, "function": {"name": "f", "arguments": "}"}}],
            "function_call": {"name": "f", "arguments": "}"}}}),
        chunk({"index": 0, "delta": {}, "finish_reason": "tool_calls"}),
    ])
    message = response["choices"][0]["message"]
    assert message["tool_calls"] == [{"id": "call_x", "type": "function",
                                      "function": {"name": "f", "arguments": "{}"}}]
    assert message["function_call"] == {"name": "f", "arguments": "{}"}


def test_refusals_and_several_choices() -> None:
    response = merged([
        chunk({"index": 1, "delta": {"content": "b"}}, {"index": 0, "delta": {"refusal": "I "}}),
        chunk({"index": 0, "delta": {"refusal": "can't"}, "finish_reason": "stop"}),
        chunk({"index": 1, "delta": {}, "finish_reason": "length"}),
    ])
    first, second = response["choices"]
    assert first["message"] == {"role": "assistant", "content": None, "refusal": "I can't"}
    assert (second["index"], second["message"]["content"], second["finish_reason"]) == (
        1, "b", "length")


def test_completions_text_and_legacy_logprobs() -> None:
    top = {"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "m"}
    response = merged([
        {**top, "choices": [{"index": 0, "text": "a", "logprobs": {
            "tokens": ["a"], "token_logprobs": [-1.0], "top_logprobs": [None],
            "text_offset": [0]}, "finish_reason": None}]},
        {**top, "choices": [{"index": 0, "text": "b", "logprobs": {
            "tokens": ["b"], "token_logprobs": [-2.0], "top_logprobs": [None],
            "text_offset": [1]}, "finish_reason": "length"}]},
    ], chat=False)
    assert response["object"] == "text_completion"
    (choice,) = response["choices"]
    assert choice["text"] == "ab"
    assert choice["logprobs"]["tokens"] == ["a", "b"]
    assert choice["logprobs"]["text_offset"] == [0, 1]
    assert choice["finish_reason"] == "length"
