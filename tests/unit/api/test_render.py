from __future__ import annotations

import time

import pytest

from api.render import embedding_body
from contracts.errors import WorkerError
from contracts.jobs import Job, JobKind, Reply, ReplyKind
from contracts.openai.common import Usage
from contracts.openai.embeddings import EmbeddingList
from dispatcher.service import pack_vector

VECTORS = [[0.25, -1.5, 3.0], [0.0, 0.5, -0.125]]


def _job() -> Job:
    return Job(id="j", kind=JobKind.EMBEDDING, model="m", prompts=["a", "b"],
               deadline=time.time() + 30)


def _final(vectors: list[list[float]]) -> Reply:
    return Reply(job_id="j", attempt="x", seq=0, kind=ReplyKind.FINAL,
                 usage=Usage(prompt_tokens=7, total_tokens=7),
                 embeddings=[pack_vector(v) for v in vectors])


@pytest.mark.parametrize("encoding", [None, "float", "base64"])
def test_embedding_body_has_the_models_shape(encoding: str | None) -> None:
    body = EmbeddingList.model_validate_json(embedding_body(_job(), [_final(VECTORS)],
                                                            encoding=encoding))
    assert body.model == "m"
    assert (body.usage.prompt_tokens, body.usage.total_tokens) == (7, 7)
    assert [e.index for e in body.data] == [0, 1]
    expected = ([pack_vector(v) for v in VECTORS] if encoding == "base64" else VECTORS)
    assert [e.embedding for e in body.data] == expected


def test_a_missing_vector_is_a_worker_error() -> None:
    with pytest.raises(WorkerError):
        embedding_body(_job(), [_final(VECTORS[:1])], encoding=None)
