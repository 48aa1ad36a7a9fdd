"""``POST /v1/chat/completions``: request, response and stream chunk."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from contracts.openai.common import (
    ChoiceCount,
    OpenAIRequest,
    Penalty,
    PositiveTokens,
    SamplingRequest,
    Seed,
    StopList,
    StreamOptions,
    Temperature,
    TopP,
    Usage,
    UsageOptional,
    WireModel,
)

Role = Literal["system", "developer", "user", "assistant"]


class ContentPart(OpenAIRequest):
    type: str
    text: str | None = None

    @field_validator("type")
    @classmethod
    def _text_only(cls, value: str) -> str:
        if value != "text":
            raise ValueError(f"content parts of type {value!r} are not supported; use 'text'")
        return value

    @field_validator("text")
    @classmethod
    def _text_present(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("a text content part needs 'text'")
        return value


class ChatMessage(OpenAIRequest):
    role: Role
    content: str | Annotated[list[ContentPart], Field(min_length=1)]
    name: str | None = None

    def text(self) -> str:
        """The message as one string; text parts are joined by newlines, as FastChat does."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content)


class ChatCompletionRequest(SamplingRequest):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=4096)] | Annotated[
        str, Field(min_length=1)]
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: ChoiceCount | None = None
    max_tokens: PositiveTokens | None = None
    max_completion_tokens: PositiveTokens | None = None
    stop: Annotated[str, Field(max_length=512)] | StopList | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    repetition_penalty: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] | None = None
    seed: Seed | None = None
    user: str | None = None


class ChatCompletionMessage(WireModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatCompletionChoice(WireModel):
    index: int
    message: ChatCompletionMessage
    logprobs: None = None
    finish_reason: str | None


class ChatCompletion(WireModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: Usage


class ChoiceDelta(WireModel):
    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class ChunkChoice(WireModel):
    index: int
    delta: ChoiceDelta
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunk(UsageOptional):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
