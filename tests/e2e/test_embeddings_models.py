"""Embeddings and the model list."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import pytest

from tests.fakeworker import embed
from tests.stack import Stack

pytestmark = pytest.mark.e2e


def test_embeddings_are_batched_and_in_order(client: openai.OpenAI, stack: Stack) -> None:
    texts = [f"sentence number {i}" for i in range(9)]
    before = stack.workers["chatml"].stats()["embeddings"]
    reply = client.embeddings.create(model="chatml-model", input=texts, encoding_format="float")
    assert stack.workers["chatml"].stats()["embeddings"] - before == 3  # batches of 4, 4, 1
    assert [d.index for d in reply.data] == list(range(9))
    for item, text in zip(reply.data, texts, strict=True):
        assert item.embedding == pytest.approx(embed(text))
    assert reply.usage.prompt_tokens == 27
    assert reply.usage.total_tokens == 27
    assert reply.model == "chatml-model"


def test_embeddings_base64_decodes_to_the_floats(http: httpx.Client) -> None:
    response = http.post("/v1/embeddings", json={"model": "fake", "input": "one string",
                                                  "encoding_format": "base64"})
    assert response.status_code == 200
    encoded = response.json()["data"][0]["embedding"]
    raw = base64.b64decode(encoded)
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert floats == pytest.approx(embed("one string"), abs=1e-6)


def test_sdk_default_base64_embeddings(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model="fake", input="default encoding")
    assert reply.data[0].embedding == pytest.approx(embed("default encoding"), abs=1e-6)


def test_engines_route(http: httpx.Client) -> None:
    response = http.post("/v1/engines/fake/embeddings", json={"input": ["a"]})
    assert response.status_code == 200
    assert response.json()["model"] == "fake"


def test_model_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == sorted(ids)
    assert {"fake", "dual", "chatml-model", "tiny", "ghost"} <= set(ids)
    model = client.models.retrieve("fake")
    assert model.id == "fake" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"
