"""Prompts rendered from a model's own Jinja chat template, as transformers and llama.cpp do.

mqgate's bundled worker sends its GGUF's ``tokenizer.chat_template`` with the conversation
template. It renders here in Jinja's immutable sandbox (a template comes from a model file, so it
is untrusted code) with what Hugging Face's ``apply_chat_template`` gives a template: the
messages as role/content dicts, ``add_generation_prompt``, ``bos_token`` and ``eos_token``,
``tools`` and ``documents`` as none, ``raise_exception``, ``strftime_now``, a ``tojson`` that
keeps non-ASCII text and does not escape HTML, the ``loopcontrols`` extension and a
pass-through ``{% generation %}`` tag, with blocks trimmed and stripped.

A template that calls ``raise_exception`` refuses the conversation (most say which ones the model
accepts, such as no system message, or alternating roles): the client's request is at fault, a
400. A template that does not parse or fails otherwise is the worker's fault, a 502.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from contracts.errors import RequestError, WorkerError
from contracts.fastchat import ConvTemplate
from contracts.jobs import JobMessage

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class _RefusedError(Exception):
    """Raised by a template's ``raise_exception``."""


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}`` marks assistant text for training masks;
    for a prompt it renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: object) -> None:
    raise _RefusedError(str(message))


def _tojson(value: object, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_GenerationTag, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    return env


_ENVIRONMENT = _environment()


@lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    try:
        return _ENVIRONMENT.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise WorkerError(f"the model's chat template does not parse: {exc}") from exc


def chat_messages(messages: Sequence[JobMessage]) -> list[dict[str, str]]:
    """The messages as a chat template reads them; OpenAI's ``developer`` is ``system``."""
    out = []
    for message in messages:
        role = _ROLES.get(message.role)
        if role is None:
            raise RequestError(f"unsupported message role {message.role!r}", param="messages")
        out.append({"role": role, "content": message.content})
    return out


def render_chat_template(template: ConvTemplate, messages: Sequence[JobMessage], *,
                         now: datetime | None = None) -> str:
    """The prompt ``template.chat_template`` renders for ``messages``, ready for the assistant.

    ``now`` is the time ``strftime_now`` formats (default: the local time at the call)."""
    assert template.chat_template is not None
    compiled = _compile(template.chat_template)
    clock = now or datetime.now().astimezone()

    def strftime_now(fmt: str) -> str:
        return clock.strftime(fmt)

    context: dict[str, Any] = {
        "messages": chat_messages(messages), "add_generation_prompt": True,
        "bos_token": template.bos_token, "eos_token": template.eos_token, "tools": None,
        "documents": None, "strftime_now": strftime_now}
    try:
        return compiled.render(context)
    except _RefusedError as exc:
        raise RequestError(f"the model's chat template refuses this conversation: {exc}",
                           param="messages") from exc
    except Exception as exc:
        raise WorkerError(f"the model's chat template failed: {type(exc).__name__}: {exc}",
                          ) from exc
