"""A chat model and an embedding model that the worker cannot tell from the real ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

from contracts.fastchat import ConvTemplate
from workers.admission import Admission, Slot
from workers.chat import GenerateRequest

TEMPLATE = ConvTemplate(name="chatml", system_template="<|im_start|>system\n{system_message}",
                        roles=["<|im_start|>user", "<|im_start|>assistant"], sep_style=9,
                        sep="<|im_end|>", stop_str="<|im_end|>", stop_token_ids=[2],
                        chat_template="{{ messages }}", bos_token="<s>", eos_token="</s>")


class FakeChat:
    """Answers with the prompt's words in reverse order, one a token, in FastChat's cumulative
    frames. While ``gate`` is closed every generation waits before its first token."""

    def __init__(self, *, context_length: int = 64) -> None:
        self.template = TEMPLATE
        self.context_length = context_length
        self.generated_tokens = 0
        self.requests: list[GenerateRequest] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = 0
        self.most_running = 0

    def count_tokens(self, prompt: str) -> int:
        return len(prompt.split()) + 1  # and a BOS

    async def frames(self, request: GenerateRequest,
                     on_exit: Callable[[], None]) -> AsyncIterator[Mapping[str, object]]:
        self.requests.append(request)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
            text = request.prompt if request.echo else ""
            words = request.prompt.split()[::-1][:request.max_new_tokens]
            for count, word in enumerate(words, start=1):
                text += " " + word
                self.generated_tokens += 1
                yield self._frame(text, count, None)
            finish = "length" if len(words) == request.max_new_tokens else "stop"
            yield self._frame(text, len(words), finish)
        finally:
            self.running -= 1
            on_exit()

    def _frame(self, text: str, count: int, finish: str | None) -> dict[str, object]:
        return {"text": text, "error_code": 0, "finish_reason": finish,
                "usage": {"prompt_tokens": 3, "completion_tokens": count,
                          "total_tokens": 3 + count}}


class FakeEmbedder:
    """A text's vector is its length in characters and in words."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        self.batches.append(texts)
        vectors = [[float(len(text)), float(len(text.split()))] for text in texts]
        return vectors, sum(len(text.split()) for text in texts)


class ObservedAdmission(Admission):
    """Admission that tells of each caller as it arrives. The caller runs on to its slot, or
    to its place in the queue, before whoever waits on ``arrivals`` runs."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.arrivals: asyncio.Queue[None] = asyncio.Queue()

    async def admit(self) -> Slot:
        self.arrivals.put_nowait(None)
        return await super().admit()
