"""Pieces shared by several OpenAI endpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Temperature = Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)]
TopP = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Penalty = Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False)]
PositiveTokens = Annotated[int, Field(ge=1, le=1_048_576)]
ChoiceCount = Annotated[int, Field(ge=1, le=128)]
Seed = Annotated[int, Field(ge=-(2**63), le=2**64 - 1)]
StopList = Annotated[list[Annotated[str, Field(max_length=512)]], Field(max_length=16)]
TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=1_048_576)]


class OpenAIRequest(BaseModel):
    """Base of client requests: strict JSON types, unknown fields accepted and ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


ServiceTier = Literal["auto", "default", "flex", "priority"]


class SamplingRequest(OpenAIRequest):
    """What chat and completion requests share: FastChat's ``top_k`` extension, and OpenAI's
    ``service_tier`` (``auto`` is served as ``default``)."""

    top_k: int | None = None
    service_tier: ServiceTier | None = None

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: int | None) -> int | None:
        if value is not None and value != -1 and not 1 <= value <= 1_000_000:
            raise ValueError("top_k must be -1 (disabled) or a positive integer")
        return value


class WireModel(BaseModel):
    """Base of what mqgate sends to clients."""

    model_config = ConfigDict(extra="forbid")


class UsageOptional(WireModel):
    """A response whose ``usage`` is left out, not null, when it has none (stream chunks)."""

    @model_serializer(mode="wrap")
    def _drop_null_usage(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("usage") is None:
            data.pop("usage", None)
        return data


class Usage(WireModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class EmbeddingUsage(WireModel):
    prompt_tokens: int = 0
    total_tokens: int = 0


class StreamOptions(OpenAIRequest):
    include_usage: bool = False


class LogProbs(BaseModel):
    """Completion logprobs in the legacy shape FastChat workers produce."""

    model_config = ConfigDict(extra="ignore")

    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)

    def joined(self, more: LogProbs) -> LogProbs:
        """These logprobs followed by ``more`` (two consecutive stretches of output)."""
        return LogProbs(text_offset=self.text_offset + more.text_offset,
                        token_logprobs=self.token_logprobs + more.token_logprobs,
                        tokens=self.tokens + more.tokens,
                        top_logprobs=self.top_logprobs + more.top_logprobs)

    def since(self, start: int) -> LogProbs:
        """The entries from token ``start`` on (a stream's delta)."""
        return LogProbs(text_offset=self.text_offset[start:],
                        token_logprobs=self.token_logprobs[start:],
                        tokens=self.tokens[start:], top_logprobs=self.top_logprobs[start:])
