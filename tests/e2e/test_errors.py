"""Every bad input gets OpenAI's error shape and the right status."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import API_KEYS, MAX_BODY
from tests.stack import Stack

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("empty messages", {"model": "chatml-model", "messages": []}),
    ("unknown role", {"model": "chatml-model", "messages": [{"role": "wizard",
                                                              "content": "x"}]}),
    ("tool role", {"model": "chatml-model", "messages": [{"role": "tool", "content": "x"}]}),
    ("null content", {"model": "chatml-model", "messages": [{"role": "user",
                                                              "content": None}]}),
    ("image part", {"model": "chatml-model", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}),
    ("temperature too high", {"model": "chatml-model", "messages": MSG, "temperature": 2.5}),
    ("negative temperature", {"model": "chatml-model", "messages": MSG, "temperature": -1}),
    ("top_p over one", {"model": "chatml-model", "messages": MSG, "top_p": 1.5}),
    ("top_k zero", {"model": "chatml-model", "messages": MSG, "top_k": 0}),
    ("n zero", {"model": "chatml-model", "messages": MSG, "n": 0}),
    ("max_tokens zero", {"model": "chatml-model", "messages": MSG, "max_tokens": 0}),
    ("string temperature", {"model": "chatml-model", "messages": MSG, "temperature": "hot"}),
    ("boolean as number", {"model": "chatml-model", "messages": MSG, "max_tokens": True}),
    ("number as boolean", {"model": "chatml-model", "messages": MSG, "stream": 1}),
    ("string as int", {"model": "chatml-model", "messages": MSG, "max_tokens": "12"}),
    ("model missing", {"messages": MSG}),
    ("messages missing", {"model": "chatml-model"}),
    ("stop wrong type", {"model": "chatml-model", "messages": MSG, "stop": 5}),
]


@pytest.mark.parametrize(("case", "body"), BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
def test_invalid_chat_bodies_get_400_and_reach_no_worker(http: httpx.Client, stack: Stack,
                                                         case: str, body: dict[str, Any]) -> None:
    before = stack.workers["chatml"].stats()["started"]
    assert_openai_error(http.post(CHAT, json=body), 400)
    assert stack.workers["chatml"].stats()["started"] == before


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"a string"', b"",
                                 b'{"model": "fake", "messages": [], "temperature": NaN}',
                                 b'{"model": "fake", "temperature": Infinity}',
                                 b'{"model": "fake", "max_tokens": 1' + b"0" * 400 + b"}",
                                 b"[" * 5000 + b"]" * 5000])
def test_malformed_json_gets_400(http: httpx.Client, raw: bytes) -> None:
    response = http.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert_openai_error(response, 400)


def test_wrong_content_type_gets_400(http: httpx.Client) -> None:
    response = http.post(CHAT, content=b"model=fake", headers={
        "content-type": "application/x-www-form-urlencoded"})
    assert_openai_error(response, 400)


def test_sdk_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fake", messages=MSG,  # type: ignore[arg-type]
                                       temperature=9)
    assert caught.value.status_code == 400
    assert caught.value.param == "temperature"


def test_completion_and_embedding_inputs(http: httpx.Client) -> None:
    assert_openai_error(http.post("/v1/completions", json={"model": "fake", "prompt": []}), 400)
    assert_openai_error(http.post("/v1/completions", json={"model": "fake",
                                                           "prompt": [1, 2, 3]}), 400)
    assert_openai_error(http.post("/v1/completions", json={"model": "fake", "prompt": "x",
                                                           "max_tokens": -1}), 400)
    assert_openai_error(http.post("/v1/embeddings", json={"model": "fake", "input": []}), 400)
    assert_openai_error(http.post("/v1/embeddings", json={"model": "fake", "input": ""}), 400)
    assert_openai_error(http.post("/v1/embeddings", json={"input": "x"}), 400)
    assert_openai_error(http.post("/v1/embeddings", json={"model": "fake", "input": "x",
                                                          "encoding_format": "hex"}), 400)


def test_prompt_over_the_context_length(http: httpx.Client) -> None:
    long_text = " ".join(["word"] * 80)
    response = http.post(CHAT, json={"model": "tiny", "messages": [{"role": "user",
                                                                    "content": long_text}]})
    assert_openai_error(response, 400, "context_length_exceeded")
    assert "maximum context length is 64 tokens" in response.json()["error"]["message"]
    streamed = http.post(CHAT, json={"model": "tiny", "stream": True,
                                     "messages": [{"role": "user", "content": long_text}]})
    assert_openai_error(streamed, 400, "context_length_exceeded")


def test_max_tokens_is_clamped_to_the_room_left(http: httpx.Client, stack: Stack) -> None:
    response = http.post(CHAT, json={"model": "tiny", "max_tokens": 5000,
                                     "messages": [{"role": "user", "content": "short"}]})
    assert response.status_code == 200
    params = stack.workers["tiny"].stats()["last_params"]
    assert params["max_new_tokens"] == 64 - (len(params["prompt"].split()) + 1)


def test_unknown_model_is_404(http: httpx.Client, client: openai.OpenAI) -> None:
    assert_openai_error(http.post(CHAT, json={"model": "nope", "messages": MSG}), 404,
                        "model_not_found")
    assert_openai_error(http.post("/v1/embeddings", json={"model": "nope", "input": "x"}), 404,
                        "model_not_found")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MSG)  # type: ignore[arg-type]


def test_model_without_a_live_worker_is_503(http: httpx.Client) -> None:
    response = http.post(CHAT, json={"model": "ghost", "messages": MSG})
    assert_openai_error(response, 503, "no_worker_available")
    assert response.headers["retry-after"]
    streamed = http.post(CHAT, json={"model": "ghost", "messages": MSG, "stream": True})
    assert_openai_error(streamed, 503, "no_worker_available")


def test_unknown_route_and_method(http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/nothing-here"), 404)
    assert_openai_error(http.get(CHAT), 405)


def test_oversized_body_is_413(http: httpx.Client) -> None:
    big = "x" * (MAX_BODY + 10)
    response = http.post(CHAT, json={"model": "fake", "messages": [{"role": "user",
                                                                    "content": big}]})
    assert_openai_error(response, 413, "payload_too_large")

    def chunks() -> Any:
        for _ in range(MAX_BODY // 1024 + 10):
            yield b"x" * 1024

    chunked = http.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert_openai_error(chunked, 413, "payload_too_large")


@pytest.mark.parametrize("route", [("GET", "/v1/models"), ("GET", "/v1/models/fake"),
                                   ("POST", CHAT), ("POST", "/v1/completions"),
                                   ("POST", "/v1/embeddings"),
                                   ("POST", "/v1/engines/fake/embeddings"),
                                   ("GET", "/v1/unknown")])
@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer\tsk-test-one", "Bearer sk-test-on",
                                  "Bearer sk-test-one1", "Basic sk-test-one",
                                  "sk-test-one", "Bearer SK-TEST-ONE"])
def test_every_route_rejects_bad_keys(stack: Stack, route: tuple[str, str],
                                      auth: str | None) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    before = stack.workers["chatml"].stats()["started"]
    response = httpx.request(route[0], stack.base_url + route[1], headers=headers,
                             json={"model": "chatml-model", "messages": MSG, "prompt": "x",
                                   "input": "x"}, timeout=10)
    assert_openai_error(response, 401, "invalid_api_key")
    assert stack.workers["chatml"].stats()["started"] == before


def test_each_configured_key_works(stack: Stack) -> None:
    for key in API_KEYS:
        response = httpx.get(stack.base_url + "/v1/models",
                             headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert response.status_code == 200


def test_sdk_authentication_error(stack: Stack) -> None:
    with (openai.OpenAI(base_url=stack.base_url + "/v1", api_key="wrong", max_retries=0) as c,
          pytest.raises(openai.AuthenticationError) as caught):
        c.models.list()
    assert caught.value.code == "invalid_api_key"
