"""The prompts the stack's fake workers receive, rendered as FastChat renders them."""

from __future__ import annotations

from tests.fakeworker import TEMPLATES

VICUNA_SYSTEM = str(TEMPLATES["vicuna_v1.1"]["system_message"])


def vicuna(*turns: str, system: str = VICUNA_SYSTEM) -> str:
    """ADD_COLON_TWO: user and assistant turns alternate, starting with the user."""
    out = system + " "
    for i, text in enumerate(turns):
        role = "USER" if i % 2 == 0 else "ASSISTANT"
        out += f"{role}: {text}" + (" " if i % 2 == 0 else "</s>")
    return out + "ASSISTANT:"


def chatml(*turns: str, system: str = "You are a helpful assistant.") -> str:
    out = f"<|im_start|>system\n{system}<|im_end|>\n"
    for i, text in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        out += f"<|im_start|>{role}\n{text}<|im_end|>\n"
    return out + "<|im_start|>assistant\n"
