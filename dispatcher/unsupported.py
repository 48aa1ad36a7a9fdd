"""Parameters FastChat-protocol workers cannot honour: refused with a 400 naming them, never
dropped in silence. A parameter is refused only when it asks for something; its neutral value
(``tools: []``, ``tool_choice: "none"``, ``logprobs: false``, ``response_format`` of type
``text``, an empty ``logit_bias``) is accepted, since clients send those by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pydantic import JsonValue

from contracts.errors import UnsupportedParameterError
from contracts.jobs import Job, JobKind

Check = Callable[[JsonValue], bool]  # True when the value asks for something

ABSENT = None


def _given(value: JsonValue) -> bool:
    return value is not None


def _non_empty(value: JsonValue) -> bool:
    return value is not None and value != [] and value != {}


def _true(value: JsonValue) -> bool:
    return value is not None and value is not False


def _positive(value: JsonValue) -> bool:
    return value is not None and value != 0 and value is not False


def _other_than(neutral: str) -> Check:
    def asks(value: JsonValue) -> bool:
        return value is not None and value != neutral
    return asks


def _format(value: JsonValue) -> bool:
    return value is not None and not (isinstance(value, dict) and value.get("type") == "text")


def _text_only(value: JsonValue) -> bool:
    return value is not None and value != ["text"]


# name, what asks for something, what the worker would lack
_CHAT: tuple[tuple[str, Check, str], ...] = (
    ("tools", _non_empty, "tool calls"),
    ("tool_choice", _other_than("none"), "tool calls"),
    ("functions", _non_empty, "function calls"),
    ("function_call", _other_than("none"), "function calls"),
    ("response_format", _format, "structured output"),
    ("logprobs", _true, "chat logprobs"),
    ("top_logprobs", _positive, "chat logprobs"),
    ("logit_bias", _non_empty, "logit bias"),
    ("modalities", _text_only, "output other than text"),
    ("audio", _given, "audio output"),
    ("prediction", _given, "predicted outputs"),
)
_COMPLETION: tuple[tuple[str, Check, str], ...] = (
    ("logit_bias", _non_empty, "logit bias"),
    ("suffix", _non_empty, "a suffix"),
)
_EMBEDDING: tuple[tuple[str, Check, str], ...] = (
    ("dimensions", _given, "shortened embeddings"),
)
_CHECKS = {JobKind.CHAT: _CHAT, JobKind.COMPLETION: _COMPLETION, JobKind.EMBEDDING: _EMBEDDING}


def _token_ids(value: JsonValue) -> bool:
    return isinstance(value, list) and any(not isinstance(v, str) for v in value)


def _message_problems(messages: JsonValue) -> Iterator[tuple[str, str]]:
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("tool", "function"):
            yield f"messages[{i}].role", f"messages of role {role!r}"
        if _non_empty(message.get("tool_calls")) or _given(message.get("function_call")):
            yield f"messages[{i}].tool_calls", "assistant messages with tool calls"
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    yield f"messages[{i}].content[{j}]", f"content parts of type {kind!r}"


def problems(job: Job) -> Iterator[tuple[str, str]]:
    """Each parameter of ``job`` a FastChat worker cannot honour, with what it asks for."""
    body = job.body
    if body is None:
        return
    for name, asks, lacking in _CHECKS.get(job.kind, ()):
        if asks(body.get(name)):
            yield name, lacking
    if job.kind is JobKind.CHAT:
        yield from _message_problems(body.get("messages"))
    elif job.kind is JobKind.COMPLETION and _token_ids(body.get("prompt")):
        yield "prompt", "token-id prompts"
    elif job.kind is JobKind.EMBEDDING and _token_ids(body.get("input")):
        yield "input", "token-id inputs"


def refuse_unsupported(job: Job) -> None:
    """UnsupportedParameterError for the first parameter of ``job`` that a FastChat worker
    cannot honour."""
    for param, lacking in problems(job):
        raise UnsupportedParameterError(
            f"'{param}' is not supported by model '{job.model}': its workers speak FastChat's "
            f"protocol, which has no {lacking}. Serve the model from an OpenAI-compatible "
            "upstream (vLLM, SGLang, llama.cpp, Ollama) to use it.", param=param)
