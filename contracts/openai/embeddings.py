"""``POST /v1/embeddings``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from contracts.openai.common import EmbeddingUsage, OpenAIRequest, TokenIds, WireModel

EmbeddingInput = Annotated[str, Field(min_length=1)]


class EmbeddingRequest(OpenAIRequest):
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    # text, or token ids (which OpenAI-compatible upstreams take, FastChat workers do not)
    input: EmbeddingInput | Annotated[list[EmbeddingInput], Field(
        min_length=1, max_length=2048)] | TokenIds | Annotated[list[TokenIds], Field(
            min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None

    def inputs(self) -> list[str]:
        """The text inputs; none when the input is token ids."""
        if isinstance(self.input, str):
            return [self.input]
        return [i for i in self.input if isinstance(i, str)]


class Embedding(WireModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class EmbeddingList(WireModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
