"""The context-length check: how many new tokens a prompt leaves room for."""

from __future__ import annotations

from contracts.errors import ContextLengthError
from dispatcher.forwarder import WorkerClient
from dispatcher.resolver import WorkerResolver

# Byte-level tokenizers emit at most one token per UTF-8 byte, plus a few special tokens.
_SPECIAL_TOKEN_ALLOWANCE = 4


def token_upper_bound(prompt: str) -> int:
    return len(prompt.encode("utf-8")) + _SPECIAL_TOKEN_ALLOWANCE


async def max_new_tokens(resolver: WorkerResolver, workers: WorkerClient, *, address: str,
                         model: str, prompt: str, requested: int | None) -> int:
    """FastChat's rule: ``min(requested, context - prompt tokens)``, or 400 when no room is left.

    The worker's tokenizer is asked only when a byte count cannot prove the prompt fits.
    """
    context = await resolver.context_length(address, model)
    if requested is not None and token_upper_bound(prompt) + requested <= context:
        return requested
    tokens = await workers.count_tokens(address, model, prompt)
    room = context - tokens
    if room <= 0:
        raise ContextLengthError(
            f"This model's maximum context length is {context} tokens. However, your messages "
            f"resulted in {tokens} tokens. Please reduce the length of the messages.",
            param="messages")
    return room if requested is None else min(requested, room)
