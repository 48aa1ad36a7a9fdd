"""Turning a job's replies into OpenAI responses and stream chunks."""

from __future__ import annotations

import base64
import sys
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from api.sse import event
from contracts.errors import WorkerError
from contracts.jobs import Job, Reply
from contracts.openai.chat import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChoiceDelta,
    ChunkChoice,
)
from contracts.openai.common import LogProbs, Usage
from contracts.openai.completions import Completion, CompletionChoice


def _collect(job: Job, replies: Iterable[Reply], count: int) -> tuple[list[str], list[
        str | None], list[LogProbs | None], Usage]:
    texts = [""] * count
    finishes: list[str | None] = [None] * count
    logprobs: list[LogProbs | None] = [None] * count
    usage = Usage()
    for reply in replies:
        for update in reply.choices:
            if not 0 <= update.index < count:
                raise WorkerError(f"a reply named choice {update.index} of {count}")
            texts[update.index] += update.text
            finishes[update.index] = update.finish_reason or finishes[update.index]
            if update.logprobs is not None:
                old = logprobs[update.index]
                logprobs[update.index] = (update.logprobs if old is None
                                          else old.joined(update.logprobs))
        if reply.usage is not None:
            usage = reply.usage
    return texts, finishes, logprobs, usage


def passed_through(chunks: list[str]) -> list[bytes]:
    """An upstream's stream chunks as SSE events, as they came."""
    return [event(chunk.encode()) for chunk in chunks]


@dataclass
class ChatRenderer:
    job: Job
    include_usage: bool = False
    id: str = field(default_factory=lambda: "")
    created: int = field(default_factory=lambda: int(time.time()))
    opened: bool = False

    def __post_init__(self) -> None:
        self.id = f"chatcmpl-{self.job.id}"

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> bytes:
        # the hot path of a stream: built without validation from already-valid parts
        return event(ChatCompletionChunk.model_construct(
            id=self.id, created=self.created, model=self.job.model, choices=choices,
            usage=usage, service_tier=self.job.tier).model_dump_json().encode())

    def opening(self) -> list[bytes]:
        return []  # the role chunks go out with the first reply: an upstream sends its own

    def chunks(self, reply: Reply) -> list[bytes]:
        if reply.chunks is not None:  # an OpenAI-compatible upstream's, passed through
            self.opened = True
            return passed_through(reply.chunks)
        out = [] if self.opened else [
            self._chunk([ChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))])
            for i in range(self.job.n)]
        self.opened = True
        out += [self._chunk([ChunkChoice.model_construct(
            index=u.index, delta=ChoiceDelta.model_construct(content=u.text or None),
            finish_reason=u.finish_reason)]) for u in reply.choices]
        if self.include_usage and reply.usage is not None and reply.kind == "final":
            out.append(self._chunk([], usage=reply.usage))
        return out

    def complete(self, replies: list[Reply]) -> bytes:
        if replies and replies[-1].body is not None:
            return replies[-1].body.encode()
        texts, finishes, _logprobs, usage = _collect(self.job, replies, self.job.n)
        return ChatCompletion(
            id=self.id, created=self.created, model=self.job.model, usage=usage,
            service_tier=self.job.tier,
            choices=[ChatCompletionChoice(index=i, message=ChatCompletionMessage(content=text),
                                          finish_reason=finishes[i] or "stop")
                     for i, text in enumerate(texts)]).model_dump_json().encode()


@dataclass
class CompletionRenderer:
    job: Job
    include_usage: bool = False
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.id = f"cmpl-{self.job.id}"

    @property
    def count(self) -> int:
        return len(self.job.prompts) * self.job.n

    def _chunk(self, choices: list[CompletionChoice], usage: Usage | None = None) -> bytes:
        return event(Completion.model_construct(
            id=self.id, created=self.created, model=self.job.model, choices=choices,
            usage=usage, service_tier=self.job.tier).model_dump_json().encode())

    def opening(self) -> list[bytes]:
        return []

    def chunks(self, reply: Reply) -> list[bytes]:
        if reply.chunks is not None:  # an OpenAI-compatible upstream's, passed through
            return passed_through(reply.chunks)
        out = [self._chunk([CompletionChoice.model_construct(
            index=u.index, text=u.text, logprobs=u.logprobs, finish_reason=u.finish_reason)])
            for u in reply.choices]
        if self.include_usage and reply.usage is not None and reply.kind == "final":
            out.append(self._chunk([], usage=reply.usage))
        return out

    def complete(self, replies: list[Reply]) -> bytes:
        if replies and replies[-1].body is not None:
            return replies[-1].body.encode()
        texts, finishes, logprobs, usage = _collect(self.job, replies, self.count)
        return Completion(
            id=self.id, created=self.created, model=self.job.model, usage=usage,
            service_tier=self.job.tier,
            choices=[CompletionChoice(index=i, text=text, logprobs=logprobs[i],
                                      finish_reason=finishes[i] or "stop")
                     for i, text in enumerate(texts)]).model_dump_json().encode()


def _floats(packed: str) -> list[float]:
    vector = array("f")
    vector.frombytes(base64.b64decode(packed))
    if sys.byteorder != "little":
        vector.byteswap()
    return vector.tolist()


def embedding_body(job: Job, replies: list[Reply], *, encoding: str | None) -> bytes:
    """An ``EmbeddingList``, serialised by orjson from plain values: validating and dumping
    thousands of floats through the model costs twice the time for the same bytes (a unit
    test holds the two to one shape)."""
    final = replies[-1]
    if final.body is not None:  # an OpenAI-compatible upstream's, passed through
        return final.body.encode()
    vectors = final.embeddings or []
    if len(vectors) != len(job.prompts):
        raise WorkerError("the worker returned the wrong number of embeddings")
    tokens = final.usage.prompt_tokens if final.usage else 0
    return orjson.dumps({
        "object": "list",
        "data": [{"object": "embedding",
                  "embedding": v if encoding == "base64" else _floats(v), "index": i}
                 for i, v in enumerate(vectors)],
        "model": job.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
