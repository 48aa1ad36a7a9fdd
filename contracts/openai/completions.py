"""``POST /v1/completions``: request, response and stream chunk."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from contracts.openai.common import (
    ChoiceCount,
    LogProbs,
    Penalty,
    PositiveTokens,
    SamplingRequest,
    Seed,
    StopList,
    StreamOptions,
    Temperature,
    TokenIds,
    TopP,
    Usage,
    UsageOptional,
    WireModel,
)


class CompletionRequest(SamplingRequest):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    # text, or token ids (which OpenAI-compatible upstreams take, FastChat workers do not)
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=2048)] | TokenIds | Annotated[
        list[TokenIds], Field(min_length=1, max_length=2048)]
    max_tokens: PositiveTokens | None = 16
    temperature: Temperature | None = None
    top_p: TopP | None = None
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

    def prompts(self) -> list[str]:
        """The text prompts; none when the prompt is token ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        return [p for p in self.prompt if isinstance(p, str)]


class CompletionChoice(WireModel):
    index: int
    text: str
    logprobs: LogProbs | None = None
    finish_reason: str | None = None


class Completion(UsageOptional):
    """Both the non-stream response and, with ``usage`` unset, each stream chunk."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    service_tier: str | None = None
