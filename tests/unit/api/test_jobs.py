from __future__ import annotations

import pytest
from starlette.requests import Request

from api.jobs import chat_job, completion_job, parse_body
from contracts.errors import RequestError
from contracts.fastchat import GenerateParams, WorkerSampling
from contracts.openai.chat import ChatCompletionRequest
from contracts.openai.completions import CompletionRequest


def request(body: bytes, content_type: str = "application/json") -> Request:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": [
        (b"content-type", content_type.encode())]}, receive)


async def test_unknown_fields_are_ignored() -> None:
    body = await parse_body(request(b'{"model": "m", "messages": [{"role": "user", '
                                    b'"content": "x", "extra": 1}], "tools": []}'),
                            ChatCompletionRequest)
    assert body.model == "m"


@pytest.mark.parametrize("raw", [b'{"model": "m", "messages": "x", "temperature": NaN}',
                                 b'{"model": 1, "messages": "x"}',
                                 b'{"model": "m", "messages": "x", "n": 1.5}',
                                 b'{"model": "m", "messages": "x", "stream": "true"}'])
async def test_lax_json_is_rejected(raw: bytes) -> None:
    with pytest.raises(RequestError):
        await parse_body(request(raw), ChatCompletionRequest)


async def test_error_names_the_parameter() -> None:
    with pytest.raises(RequestError) as caught:
        await parse_body(request(b'{"model": "m", "messages": [{"role": "user", '
                                 b'"content": "x"}], "top_p": 3}'), ChatCompletionRequest)
    assert caught.value.param == "top_p"
    assert "top_p" in caught.value.message


def test_chat_defaults() -> None:
    job = chat_job(ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": "s"}), timeout=5)
    assert job.params.temperature == 0.7
    assert job.params.max_tokens is None
    assert job.params.stop == ["s"]
    assert job.n == 1 and not job.stream and job.remaining() > 4


def test_max_completion_tokens_wins() -> None:
    job = chat_job(ChatCompletionRequest.model_validate(
        {"model": "m", "messages": "x", "max_tokens": 9, "max_completion_tokens": 3}), timeout=5)
    assert job.params.max_tokens == 3


def test_completion_defaults() -> None:
    job = completion_job(CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"]}),
                         timeout=5)
    assert job.prompts == ["a", "b"]
    assert job.params.max_tokens == 16
    assert job.params.echo is False


def test_every_sampling_parameter_reaches_the_worker_by_name() -> None:
    sampling = {"temperature": 0.2, "top_p": 0.5, "top_k": 5, "presence_penalty": 0.5,
                "frequency_penalty": -0.5, "repetition_penalty": 1.1, "seed": 7,
                "logprobs": 2, "echo": True, "best_of": 3, "use_beam_search": True}
    job = completion_job(CompletionRequest.model_validate(
        {"model": "m", "prompt": "p", "max_tokens": 5, **sampling}), timeout=5)
    worker = GenerateParams(**job.params.sampling(), model="m", prompt="p", max_new_tokens=5,
                            stop=[])
    assert worker.model_dump(include=set(sampling)) == sampling
    assert set(sampling) == set(WorkerSampling.model_fields)
