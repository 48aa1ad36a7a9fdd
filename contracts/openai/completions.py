"""``POST /v1/completions``: request, response and stream chunk."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from contracts.openai.common import (
    ChoiceCount,
    LogProbs,
    OpenAIRequest,
    Penalty,
    PositiveTokens,
    Seed,
    StopList,
    StreamOptions,
    Temperature,
    TopP,
    Usage,
    WireModel,
)


class CompletionRequest(OpenAIRequest):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    max_tokens: PositiveTokens | None = 16
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: int | None = None
    n: ChoiceCount | None = None
    stop: Annotated[str, Field(max_length=512)] | StopList | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    echo: bool | None = False
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    repetition_penalty: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] | None = None
    best_of: Annotated[int, Field(ge=1, le=128)] | None = None
    use_beam_search: bool | None = None
    seed: Seed | None = None
    suffix: str | None = None
    user: str | None = None

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: int | None) -> int | None:
        if value is not None and value != -1 and not 1 <= value <= 1_000_000:
            raise ValueError("top_k must be -1 (disabled) or a positive integer")
        return value

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class CompletionChoice(WireModel):
    index: int
    text: str
    logprobs: LogProbs | None = None
    finish_reason: str | None = None


class Completion(WireModel):
    """Both the non-stream response and, with ``usage`` unset, each stream chunk."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None

    @model_serializer(mode="wrap")
    def _drop_null_usage(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("usage") is None:
            data.pop("usage", None)
        return data
