"""``POST /v1/embeddings``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from contracts.openai.common import EmbeddingUsage, OpenAIRequest, WireModel

EmbeddingInput = Annotated[str, Field(min_length=1)]


class EmbeddingRequest(OpenAIRequest):
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    input: EmbeddingInput | Annotated[list[EmbeddingInput], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(WireModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class EmbeddingList(WireModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
