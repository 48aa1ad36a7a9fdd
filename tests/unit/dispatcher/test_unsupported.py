"""What FastChat workers cannot honour is refused with a 400 naming it, never dropped."""

from __future__ import annotations

import time
from typing import Any

import pytest

from contracts.errors import UnsupportedParameterError
from contracts.jobs import Job, JobKind
from dispatcher.unsupported import refuse_unsupported

USER = {"role": "user", "content": "hi"}
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {}}}]


def job(kind: JobKind, body: dict[str, Any]) -> Job:
    return Job(id="j", kind=kind, model="m", body=body, deadline=time.time() + 10)


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": TOOLS}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
     "messages[0].content[1]"),
    ({"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [{}]},
                   {"role": "tool", "content": "sunny", "tool_call_id": "c"}]},
     "messages[1].tool_calls"),
    ({"messages": [{"role": "tool", "content": "sunny", "tool_call_id": "c"}]},
     "messages[0].role"),
])
def test_chat_parameters_that_ask_for_something_are_refused(extra: dict[str, Any],
                                                            param: str) -> None:
    with pytest.raises(UnsupportedParameterError) as caught:
        refuse_unsupported(job(JobKind.CHAT, {"model": "m", "messages": [USER], **extra}))
    assert caught.value.param == param
    assert caught.value.status_code == 400
    assert caught.value.code == "unsupported_parameter"
    assert f"'{param}'" in caught.value.message


@pytest.mark.parametrize("extra", [
    {"tools": []}, {"tools": None}, {"tool_choice": "none"}, {"logprobs": False},
    {"top_logprobs": 0}, {"response_format": {"type": "text"}}, {"logit_bias": {}},
    {"parallel_tool_calls": True}, {"modalities": ["text"]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
])
def test_neutral_values_are_accepted(extra: dict[str, Any]) -> None:
    refuse_unsupported(job(JobKind.CHAT, {"model": "m", "messages": [USER], **extra}))


@pytest.mark.parametrize(("kind", "body", "param"), [
    (JobKind.COMPLETION, {"prompt": [1, 2, 3]}, "prompt"),
    (JobKind.COMPLETION, {"prompt": [[1, 2], [3]]}, "prompt"),
    (JobKind.COMPLETION, {"prompt": "x", "logit_bias": {"1": 2}}, "logit_bias"),
    (JobKind.COMPLETION, {"prompt": "x", "suffix": "end"}, "suffix"),
    (JobKind.EMBEDDING, {"input": [[1, 2, 3]]}, "input"),
    (JobKind.EMBEDDING, {"input": "x", "dimensions": 64}, "dimensions"),
])
def test_completion_and_embedding_parameters(kind: JobKind, body: dict[str, Any],
                                             param: str) -> None:
    with pytest.raises(UnsupportedParameterError) as caught:
        refuse_unsupported(job(kind, body))
    assert caught.value.param == param


def test_text_prompts_and_inputs_pass() -> None:
    refuse_unsupported(job(JobKind.COMPLETION, {"prompt": ["a", "b"], "logprobs": 2}))
    refuse_unsupported(job(JobKind.EMBEDDING, {"input": ["a", "b"]}))
