"""The bundled worker's state and behaviour behind FastChat's model-worker routes.

``Worker`` holds the chat model, the embedding model and the generation slots. A generation
waits for a slot before its response starts (as FastChat's workers do) and frees it when the
model is done with it, which is after the client has gone, not when it goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

import orjson

from contracts.fastchat import (
    BundledWorkerStatus,
    ConvTemplate,
    ConvTemplateResponse,
    CountTokenRequest,
    CountTokenResponse,
    EmbeddingsWorkerRequest,
    EmbeddingsWorkerResponse,
    ErrorCode,
    GenerateParams,
    ModelDetails,
    WorkerFrame,
)
from workers.admission import Admission, Slot
from workers.chat import GenerateRequest

NO_CHAT_CONTEXT_LENGTH = 512  # what an embeddings-only worker reports


class ChatEngine(Protocol):
    """What the worker needs of a chat model (workers/chat.py's ``ChatModel``)."""

    @property
    def template(self) -> ConvTemplate: ...

    @property
    def context_length(self) -> int: ...

    @property
    def generated_tokens(self) -> int: ...

    def count_tokens(self, prompt: str) -> int: ...

    def frames(self, request: GenerateRequest,
               on_exit: Callable[[], None]) -> AsyncIterator[Mapping[str, object]]:
        """FastChat's cumulative frames of one generation; ``on_exit`` runs once the model is
        free again."""
        ...


class EmbeddingEngine(Protocol):
    """What the worker needs of an embedding model (workers/embeddings.py's ``Embedder``)."""

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]: ...


def error_frame(code: ErrorCode, text: str) -> bytes:
    """FastChat's error frame, ``{"text": ..., "error_code": ...}``, without its ``\\0``."""
    return WorkerFrame(text=text, error_code=code).model_dump_json(exclude_none=True).encode()


def generate_request(params: GenerateParams) -> GenerateRequest:
    return GenerateRequest(
        prompt=params.prompt,
        max_new_tokens=params.max_new_tokens or 256,  # llama.cpp reads 0 as "up to the end"
        temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
        presence_penalty=params.presence_penalty, frequency_penalty=params.frequency_penalty,
        repetition_penalty=params.repetition_penalty or 1.0, stop=list(params.stop),
        echo=params.echo, logprobs=params.logprobs, seed=params.seed)


class Generation:
    """One admitted generation's ``\\0``-terminated frames. Once its frames are read the model
    frees the slot; ``close`` frees it when they never were."""

    def __init__(self, chat: ChatEngine | None, params: GenerateParams, slot: Slot) -> None:
        self._chat = chat
        self._params = params
        self._slot = slot

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._chat is None:
            text = f"model {self._params.model!r} does not generate text"
            yield error_frame(ErrorCode.INTERNAL_ERROR, text) + b"\0"
            return
        frames = self._chat.frames(generate_request(self._params),
                                   on_exit=self._slot.hand_over())
        async for frame in frames:
            yield orjson.dumps(frame) + b"\0"

    async def last(self) -> bytes:
        """The last frame, without its ``\\0``: FastChat's ``/worker_generate`` answer."""
        last = b"{}"
        async for frame in self:
            last = frame
        return last.rstrip(b"\0")

    def close(self) -> None:
        self._slot.release_unless_handed_over()


class Worker:
    """A chat model, an embedding model (either may be absent) and the slots generations take
    (one, unless ``admission`` says otherwise)."""

    def __init__(self, *, chat: ChatEngine | None = None, chat_name: str | None = None,
                 embedder: EmbeddingEngine | None = None, embedding_name: str | None = None,
                 admission: Admission | None = None) -> None:
        self._chat = chat
        self._chat_name = chat_name
        self._embedder = embedder
        self._embedding_name = embedding_name
        self._admission = admission or Admission(1)

    @property
    def model_names(self) -> list[str]:
        return [name for name in (self._chat_name, self._embedding_name) if name]

    @property
    def queue_length(self) -> int:
        return self._admission.queue_length

    async def generation(self, params: GenerateParams) -> Generation:
        """The generation of ``params``, once a slot is free."""
        slot = await self._admission.admit()
        serves = params.model in ("", self._chat_name)  # a body may leave the model out
        return Generation(self._chat if serves else None, params, slot)

    async def embed(self, request: EmbeddingsWorkerRequest) -> EmbeddingsWorkerResponse:
        if self._embedder is None or request.model != self._embedding_name:
            return EmbeddingsWorkerResponse(text=f"model {request.model!r} does not embed",
                                            error_code=ErrorCode.INTERNAL_ERROR)
        vectors, tokens = await asyncio.to_thread(self._embedder.embed, request.input)
        return EmbeddingsWorkerResponse(embedding=vectors, token_num=tokens)

    async def count_tokens(self, request: CountTokenRequest) -> CountTokenResponse:
        if self._chat is None:
            return CountTokenResponse(count=len(request.prompt.split()))
        count = await asyncio.to_thread(self._chat.count_tokens, request.prompt)
        return CountTokenResponse(count=count)

    def conv_template(self) -> ConvTemplateResponse | None:
        """None for a worker without a chat model."""
        return None if self._chat is None else ConvTemplateResponse(conv=self._chat.template)

    def model_details(self) -> ModelDetails:
        return ModelDetails(context_length=self._chat.context_length if self._chat
                            else NO_CHAT_CONTEXT_LENGTH)

    def status(self) -> BundledWorkerStatus:
        return BundledWorkerStatus(
            model_names=self.model_names, speed=1, queue_length=self.queue_length,
            generated_tokens=self._chat.generated_tokens if self._chat else 0)
