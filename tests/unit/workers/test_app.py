"""The bundled worker's routes, as FastChat's API server and mqgate's dispatchers call them,
over a fake chat model and a fake embedding model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from contracts.fastchat import ErrorCode, WorkerStatus
from tests.unit.workers.fakes import TEMPLATE, FakeChat, FakeEmbedder, ObservedAdmission
from workers.app import WorkerConfig, create_worker_app, worker_app
from workers.worker import Worker

CHAT = "chat-model"
EMBED = "embed-model"
# what FastChat's openai_api_server sends for a chat request (fschat 0.2.36), and an image
FASTCHAT_CHAT = {"model": CHAT, "prompt": "one two three", "temperature": 0.7,
                 "logprobs": None, "top_p": 1.0, "top_k": -1, "presence_penalty": 0.0,
                 "frequency_penalty": 0.0, "max_new_tokens": 58, "echo": False,
                 "stop_token_ids": None, "stop": ["<|im_end|>"],
                 "images": ["data:image/png;base64,AAAA"]}


@pytest.fixture
def chat() -> FakeChat:
    return FakeChat()


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker")


@pytest.fixture
async def client(chat: FakeChat, embedder: FakeEmbedder) -> AsyncIterator[httpx.AsyncClient]:
    app = create_worker_app(WorkerConfig(address="http://worker", controller_url=None,
                                         chat=chat, chat_name=CHAT, embedder=embedder,
                                         embedding_name=EMBED))
    async with client_of(app) as client:
        yield client


def frames(body: bytes) -> list[dict[str, Any]]:
    """A stream's frames; each ends in NUL, so the last piece is empty."""
    *parts, tail = body.split(b"\0")
    assert tail == b""
    return [orjson.loads(part) for part in parts]


async def test_a_stream_is_cumulative_frames_each_ending_in_nul(
        client: httpx.AsyncClient, chat: FakeChat) -> None:
    response = await client.post("/worker_generate_stream", json=FASTCHAT_CHAT)
    assert response.status_code == 200
    sent = frames(response.content)
    assert [f["text"] for f in sent] == [" three", " three two", " three two one",
                                         " three two one"]
    assert [f["finish_reason"] for f in sent] == [None, None, None, "stop"]
    assert sent[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3,
                                 "total_tokens": 6}
    (request,) = chat.requests
    assert (request.max_new_tokens, request.temperature, request.echo) == (58, 0.7, False)
    assert (request.stop, request.logprobs, request.repetition_penalty) == (
        ["<|im_end|>"], None, 1.0)


async def test_what_a_client_leaves_out_takes_fastchat_workers_defaults(
        client: httpx.AsyncClient, chat: FakeChat) -> None:
    response = await client.post("/worker_generate_stream",
                                  json={"prompt": "a b", "stop": "b"})
    assert frames(response.content)[-1]["text"] == "a b b a"  # echo is on
    (request,) = chat.requests
    assert (request.max_new_tokens, request.temperature, request.top_k) == (256, 1.0, -1)
    assert (request.echo, request.stop) == (True, ["b"])


async def test_worker_generate_answers_the_last_frame(client: httpx.AsyncClient) -> None:
    response = await client.post("/worker_generate", json=FASTCHAT_CHAT)
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert (answer["text"], answer["finish_reason"]) == (" three two one", "stop")


async def test_another_models_generation_is_one_error_frame(client: httpx.AsyncClient) -> None:
    response = await client.post("/worker_generate_stream",
                                 json={**FASTCHAT_CHAT, "model": EMBED})
    assert response.status_code == 200
    (frame,) = frames(response.content)
    assert frame == {"text": f"model {EMBED!r} does not generate text",
                     "error_code": ErrorCode.INTERNAL_ERROR}
    status = WorkerStatus.model_validate_json(
        (await client.post("/worker_get_status")).content)
    assert status.queue_length == 0  # the slot it took is free again


async def test_a_body_that_does_not_parse_is_a_400_with_a_fastchat_error(
        client: httpx.AsyncClient, chat: FakeChat) -> None:
    response = await client.post("/worker_generate_stream", json={"model": CHAT})
    assert response.status_code == 400
    (frame,) = frames(response.content)  # still a frame, for FastChat's stream reader
    assert frame["error_code"] == ErrorCode.VALIDATION_TYPE_ERROR
    assert "prompt" in frame["text"]
    response = await client.post("/count_token", content=b"not json")
    assert response.status_code == 400
    assert response.json()["error_code"] == ErrorCode.VALIDATION_TYPE_ERROR
    assert not chat.requests


async def test_count_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/count_token", json={"model": CHAT, "prompt": "a b c"})
    assert response.content == b'{"count":4,"error_code":0}'


async def test_model_details_and_conv_template(client: httpx.AsyncClient) -> None:
    details = await client.post("/model_details", json={"model": CHAT})
    assert details.json() == {"context_length": 64}
    template = await client.post("/worker_get_conv_template", json={"model": CHAT})
    assert template.json() == {"conv": TEMPLATE.model_dump()}


async def test_an_embeddings_only_worker_describes_no_chat(embedder: FakeEmbedder) -> None:
    app = create_worker_app(WorkerConfig(address="http://worker", controller_url=None,
                                         embedder=embedder, embedding_name=EMBED))
    async with client_of(app) as client:
        assert (await client.post("/worker_get_conv_template")).json() == {"conv": {}}
        assert (await client.post("/model_details")).json() == {"context_length": 512}
        counted = await client.post("/count_token", json={"prompt": "a b"})
        assert counted.json()["count"] == 2
        status = (await client.post("/worker_get_status")).json()
        assert status["model_names"] == [EMBED]


async def test_embeddings(client: httpx.AsyncClient, embedder: FakeEmbedder) -> None:
    response = await client.post("/worker_get_embeddings",
                                 json={"model": EMBED, "input": ["a b", "cde"]})
    assert response.json() == {"embedding": [[3.0, 2.0], [3.0, 1.0]], "token_num": 3}
    assert embedder.batches == [["a b", "cde"]]
    wrong = await client.post("/worker_get_embeddings", json={"model": CHAT, "input": ["a"]})
    assert wrong.json() == {"text": f"model {CHAT!r} does not embed",
                            "error_code": ErrorCode.INTERNAL_ERROR}


async def test_status_names_the_models_and_the_tokens_generated(
        client: httpx.AsyncClient) -> None:
    await client.post("/worker_generate_stream", json=FASTCHAT_CHAT)
    status = (await client.post("/worker_get_status")).json()
    assert status == {"model_names": [CHAT, EMBED], "speed": 1, "queue_length": 0,
                      "generated_tokens": 3}


async def test_generations_over_the_limit_wait_and_count_in_the_queue_length(
        chat: FakeChat) -> None:
    admission = ObservedAdmission(1)
    app = worker_app(Worker(chat=chat, chat_name=CHAT, admission=admission))
    chat.gate.clear()
    async with client_of(app) as client:
        async def queue_length() -> int:
            answer = await client.post("/worker_get_status")
            return WorkerStatus.model_validate_json(answer.content).queue_length

        requests = []
        for expected in (1, 2, 3):
            requests.append(asyncio.create_task(
                client.post("/worker_generate_stream", json=FASTCHAT_CHAT)))
            await admission.arrivals.get()
            assert await queue_length() == expected
        assert len(chat.requests) <= 1  # the others wait for the slot
        chat.gate.set()
        answers = await asyncio.gather(*requests)
        assert [frames(a.content)[-1]["text"] for a in answers] == [" three two one"] * 3
        assert chat.most_running == 1
        assert await queue_length() == 0
