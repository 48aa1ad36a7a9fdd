"""The envelopes that travel over the broker: Job (api to dispatcher), Reply and ReplyBatch
(back), Cancel."""

from __future__ import annotations

import time
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from contracts.errors import ErrorDetail
from contracts.fastchat import WorkerSampling
from contracts.openai.common import LogProbs, Usage


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobKind(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"
    TOKEN_CHECK = "token_check"  # FastChat's /api/v1/token_check: count, do not generate


class Tier(StrEnum):
    """The service tier a job is served in (OpenAI's ``service_tier``; ``auto`` is
    ``default``): ``priority`` jobs overtake waiting ``default`` ones of their model, and
    ``flex`` jobs run only when nothing else of their model waits."""

    FLEX = "flex"
    DEFAULT = "default"
    PRIORITY = "priority"

    @property
    def rank(self) -> int:
        """The broker priority: higher is taken first."""
        return _TIER_RANKS[self]


_TIER_RANKS = {Tier.FLEX: 0, Tier.DEFAULT: 1, Tier.PRIORITY: 2}
MAX_TIER_RANK = 2


class JobMessage(Envelope):
    role: str
    content: str


class SamplingParams(WorkerSampling):
    """Generation parameters after validation and defaulting by the api: the worker's
    sampling parameters, and what the dispatcher turns into the worker's limits and stops."""

    max_tokens: int | None = None
    stop: list[str] = Field(default_factory=list)


class Job(Envelope):
    """One client request, validated and ready for a dispatcher.

    ``messages`` is set for chat; ``prompts`` holds a chat's raw string prompt, a completion's
    prompts, or an embedding request's inputs. ``body`` is the request's JSON as the client
    sent it (unknown fields kept): what an OpenAI-compatible upstream is sent, and what tells
    a FastChat worker's dispatcher which parameters it cannot honour.
    """

    id: str
    kind: JobKind
    model: str
    messages: list[JobMessage] | None = None
    prompts: list[str] = Field(default_factory=list)
    params: SamplingParams = Field(default_factory=SamplingParams)
    n: int = 1
    stream: bool = False
    tier: Tier = Tier.DEFAULT
    body: dict[str, JsonValue] | None = None
    deadline: float
    submitted: float = Field(default_factory=time.time)

    def remaining(self, now: float | None = None) -> float:
        return self.deadline - (time.time() if now is None else now)


class ReplyKind(StrEnum):
    STARTED = "started"  # a dispatcher took the job (sent on redeliveries)
    CHUNK = "chunk"
    FINAL = "final"
    ERROR = "error"


class ChoiceUpdate(Envelope):
    """New output for one choice: a text delta, and its end when ``finish_reason`` is set."""

    index: int
    text: str = ""
    finish_reason: str | None = None
    logprobs: LogProbs | None = None


class TokenCount(Envelope):
    count: int
    context_length: int


class Reply(Envelope):
    """One message on an api process's reply queue.

    ``attempt`` names the delivery of the job that produced it and ``seq`` numbers the replies
    of that attempt from 0, so the api can drop a second attempt's output and spot a gap.
    """

    job_id: str
    attempt: str
    seq: int
    kind: ReplyKind
    choices: list[ChoiceUpdate] = Field(default_factory=list)
    usage: Usage | None = None
    embeddings: list[str] | None = None  # each vector as base64 of little-endian float32
    token_count: TokenCount | None = None
    error: ErrorDetail | None = None
    status: int | None = None  # the status an upstream answered ``error`` with
    # an OpenAI-compatible upstream's output, passed through: its stream chunks (each an SSE
    # event's data), set on every reply of a streamed job, or its whole response
    chunks: list[str] | None = None
    body: str | None = None


class ReplyBatch(Envelope):
    """Replies bound for one api process that travel in one broker message; each keeps its
    own job id, attempt and sequence number."""

    replies: list[Reply]


class Cancel(Envelope):
    job_id: str
