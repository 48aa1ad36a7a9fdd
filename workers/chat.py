"""Text generation with llama.cpp, off the event loop, one generation at a time."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from contracts.fastchat import ConvTemplate, ErrorCode
from workers.templates import TemplateError, conv_template


def default_threads() -> int:
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(cores // 2, 8)


@dataclass(frozen=True, kw_only=True)
class GenerateRequest:
    prompt: str
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    presence_penalty: float
    frequency_penalty: float
    repetition_penalty: float
    stop: list[str]
    echo: bool
    logprobs: int | None
    seed: int | None


class ChatModel:
    """A GGUF model; ``frames`` yields FastChat's cumulative frames as dicts."""

    def __init__(self, path: Path, *, n_ctx: int = 2048, threads: int | None = None,
                 template_override: str | None = None) -> None:
        from llama_cpp import Llama  # the local extra; imported only when a model is served

        self.path = path
        self.context_length = n_ctx
        try:
            self._llm = Llama(model_path=str(path), n_ctx=n_ctx,
                              n_threads=threads or default_threads(), verbose=False,
                              logits_all=False)
        except jinja2.TemplateError as exc:  # llama-cpp-python compiles the template too
            raise TemplateError(f"the model file's chat template does not parse: {exc}") from exc
        metadata: dict[str, str] = dict(self._llm.metadata)
        bos, eos = self._llm.token_bos(), self._llm.token_eos()
        self._bos = self._token_text(bos)
        self._adds_bos = bool(self._llm.tokenize(b"", add_bos=True))  # the model asks for one
        self.template: ConvTemplate = conv_template(
            metadata.get("tokenizer.chat_template"), override=template_override,
            stop_token_ids=[eos], bos_token=self._bos, eos_token=self._token_text(eos))
        self._lock = threading.Lock()
        self.generated_tokens = 0  # over the worker's life, for its status

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _model_prompt(self, prompt: str) -> str:
        """``prompt`` without the BOS text a chat template begins with when llama.cpp puts
        the BOS token first itself (as llama.cpp's own chat path does), so it is there once."""
        if self._adds_bos and self._bos and prompt.startswith(self._bos):
            return prompt[len(self._bos):]
        return prompt

    def count_tokens(self, prompt: str) -> int:
        return len(self._llm.tokenize(self._model_prompt(prompt).encode("utf-8"), add_bos=True,
                                      special=True))

    def _run(self, request: GenerateRequest, cancelled: threading.Event,
             emit: Any) -> None:
        """In a thread: generate, calling ``emit`` with each frame, until done or cancelled."""
        with self._lock:
            prompt_tokens = self.count_tokens(request.prompt)
            text = request.prompt if request.echo else ""
            count = 0
            finish: str | None = None
            stream: Iterator[Any] = self._llm.create_completion(  # type: ignore[assignment]
                self._model_prompt(request.prompt), max_tokens=request.max_new_tokens,
                temperature=request.temperature, top_p=request.top_p,
                top_k=max(request.top_k, 0), presence_penalty=request.presence_penalty,
                frequency_penalty=request.frequency_penalty,
                repeat_penalty=request.repetition_penalty, stop=request.stop or None,
                seed=request.seed, stream=True)
            try:
                for chunk in stream:
                    if cancelled.is_set():
                        return
                    choice = chunk["choices"][0]
                    text += choice.get("text") or ""
                    finish = choice.get("finish_reason") or finish
                    if choice.get("finish_reason") is None:
                        count += 1  # llama.cpp ends with a frame that carries no new token
                        self.generated_tokens += 1
                    emit(self._frame(text, prompt_tokens, count, None))
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            emit(self._frame(text, prompt_tokens, count, finish or "stop"))

    @staticmethod
    def _frame(text: str, prompt_tokens: int, count: int, finish: str | None) -> dict[str, Any]:
        return {"text": text, "error_code": 0, "finish_reason": finish,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": count,
                          "total_tokens": prompt_tokens + count}}

    async def frames(self, request: GenerateRequest,
                     on_exit: Callable[[], None]) -> AsyncIterator[dict[str, Any]]:
        """Frames of one generation; ``on_exit`` runs on the loop once the model is free again,
        which is after the client has gone, not when it goes."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(frame: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, frame)

        def work() -> None:
            try:
                self._run(request, cancelled, emit)
            except Exception as exc:  # noqa: BLE001 - becomes an error frame
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)
                loop.call_soon_threadsafe(on_exit)

        worker = threading.Thread(target=work, name="llama-generate", daemon=True)
        worker.start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    yield {"text": f"generation failed: {type(item).__name__}",
                           "error_code": ErrorCode.INTERNAL_ERROR}
                    return
                yield item
        finally:
            cancelled.set()  # a closed client stream stops generation at the next token
