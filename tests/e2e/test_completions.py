"""Legacy completions through the whole stack."""

from __future__ import annotations

import openai
import pytest

from tests.fakeworker import expected_text
from tests.stack import Stack

pytestmark = pytest.mark.e2e


def test_string_prompt_with_default_max_tokens(client: openai.OpenAI, stack: Stack) -> None:
    prompt = "one two three [[tokens=40]]"
    reply = client.completions.create(model="chatml-model", prompt=prompt)
    assert stack.workers["chatml"].stats()["last_params"]["max_new_tokens"] == 16
    assert reply.object == "text_completion"
    assert reply.id.startswith("cmpl-")
    assert reply.choices[0].text == expected_text(prompt, 16, ["<|im_end|>"])[0]
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 16


def test_template_stop_strings_apply_to_completions(client: openai.OpenAI,
                                                   stack: Stack) -> None:
    client.completions.create(model="chatml-model", prompt="x", stop=["END"])
    assert stack.workers["chatml"].stats()["last_params"]["stop"] == ["END", "<|im_end|>"]


def test_prompt_list_and_n_number_choices_prompt_major(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="fake", prompt=["a b", "c d e"], n=2, max_tokens=4)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    assert [c.text for c in reply.choices] == [expected_text("a b", 4)[0]] * 2 + [
        expected_text("c d e", 4)[0]] * 2
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 3 + 4  # each prompt counted once
    assert reply.usage.completion_tokens == 16


def test_echo_returns_the_prompt_first(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="fake", prompt="echo this", echo=True, max_tokens=2)
    assert reply.choices[0].text == "echo this" + expected_text("echo this", 2)[0]


def test_logprobs_come_back(client: openai.OpenAI, stack: Stack) -> None:
    reply = client.completions.create(model="chatml-model", prompt="p q r", logprobs=1,
                                      max_tokens=3)
    assert stack.workers["chatml"].stats()["last_params"]["logprobs"] == 1
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["r", " q", " p"]
    assert logprobs.token_logprobs == [-0.5, -0.5, -0.5]


def test_completion_stream_has_per_prompt_indexes(client: openai.OpenAI) -> None:
    stream = client.completions.create(model="fake", prompt=["k l [[delay=0.01]]", "m n"],
                                       stream=True, max_tokens=3,
                                       stream_options={"include_usage": True})
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    usage = None
    for chunk in stream:
        assert chunk.object == "text_completion"
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
        usage = chunk.usage or usage
    assert texts == {0: expected_text("k l [[delay=0.01]]", 3)[0],
                     1: expected_text("m n", 3)[0]}
    assert finishes == {0: "length", 1: "length"}
    assert usage is not None and usage.completion_tokens == 6
