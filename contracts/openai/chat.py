"""``POST /v1/chat/completions``: request, response and stream chunk."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

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

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ContentPart(OpenAIRequest):
    """A part of a message's content. FastChat workers read text parts; image, audio and file
    parts go to OpenAI-compatible upstreams as sent (FastChat workers' dispatchers refuse
    them)."""

    type: Annotated[str, Field(min_length=1)]
    text: str | None = None

    @model_validator(mode="after")
    def _text_present(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a text content part needs 'text'")
        return self


class ChatMessage(OpenAIRequest):
    role: Role
    # null only for an assistant's message that carries tool calls instead
    content: str | Annotated[list[ContentPart], Field(min_length=1)] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _content_present(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a message of role {self.role!r} needs 'content'")
        return self

    def text(self) -> str:
        """The message as one string; text parts are joined by newlines, as FastChat does."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "\n".join(part.text or "" for part in self.content if part.type == "text")


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
    service_tier: str | None = None


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
    service_tier: str | None = None
