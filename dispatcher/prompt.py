"""Prompt rendering from a worker's conversation template, byte for byte as FastChat renders it.

A template arrives from ``/worker_get_conv_template`` with ``sep_style`` as FastChat's integer,
which dispatcher.sep_style turns into a style. Each style below is one rendering rule;
``Turn.text`` of None is the generation slot, and, as in FastChat, an empty message renders like
the slot. A template that carries the model's own Jinja chat template (mqgate's bundled worker
sends one) renders through dispatcher.chat_template instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from contracts.errors import RequestError, WorkerError
from contracts.fastchat import ConvTemplate, SepStyleNumbering
from contracts.jobs import JobMessage
from dispatcher.chat_template import render_chat_template
from dispatcher.sep_style import SeparatorStyle, resolve_style


@dataclass(frozen=True, slots=True)
class Conversation:
    template: ConvTemplate
    system_message: str
    turns: Sequence[tuple[str, str | None]]

    @property
    def system_prompt(self) -> str:
        try:
            return self.template.system_template.format(system_message=self.system_message)
        except (KeyError, IndexError, ValueError):
            return self.template.system_template.replace("{system_message}", self.system_message)

    def seps(self) -> tuple[str, str]:
        return self.template.sep, self.template.sep2 or ""


Renderer = Callable[[Conversation], str]


def _colon_single(c: Conversation) -> str:
    out = c.system_prompt + c.template.sep
    for role, msg in c.turns:
        out += f"{role}: {msg}{c.template.sep}" if msg else f"{role}:"
    return out


def _colon_two(c: Conversation) -> str:
    seps = c.seps()
    out = c.system_prompt + seps[0]
    for i, (role, msg) in enumerate(c.turns):
        out += f"{role}: {msg}{seps[i % 2]}" if msg else f"{role}:"
    return out


def _colon_space_single(c: Conversation) -> str:
    out = c.system_prompt + c.template.sep
    for role, msg in c.turns:
        out += f"{role}: {msg}{c.template.sep}" if msg else f"{role}: "
    return out


def _new_line_single(c: Conversation) -> str:
    out = "" if c.system_prompt == "" else c.system_prompt + c.template.sep
    for role, msg in c.turns:
        out += f"{role}\n{msg}{c.template.sep}" if msg else f"{role}\n"
    return out


def _no_colon_single(c: Conversation) -> str:
    out = c.system_prompt
    for role, msg in c.turns:
        out += f"{role}{msg}{c.template.sep}" if msg else role
    return out


def _no_colon_two(c: Conversation) -> str:
    seps = c.seps()
    out = c.system_prompt
    for i, (role, msg) in enumerate(c.turns):
        out += f"{role}{msg}{seps[i % 2]}" if msg else role
    return out


def _rwkv(c: Conversation) -> str:
    out = c.system_prompt
    for role, msg in c.turns:
        if msg:
            out += f"{role}: " + msg.replace("\r\n", "\n").replace("\n\n", "\n") + "\n\n"
        else:
            out += f"{role}:"
    return out


def _llama2(c: Conversation) -> str:
    seps = c.seps()
    out = c.system_prompt if c.system_message else "[INST] "
    roles = c.template.roles
    for i, (_role, msg) in enumerate(c.turns):
        tag = roles[i % 2]
        if msg:
            out += msg + " " if i == 0 else f"{tag} {msg}{seps[i % 2]}"
        else:
            out += tag
    return out


def _llama3(c: Conversation) -> str:
    out = "<|begin_of_text|>" + (c.system_prompt if c.system_message else "")
    for role, msg in c.turns:
        out += f"<|start_header_id|>{role}<|end_header_id|>\n\n"
        if msg:
            out += f"{msg.strip()}<|eot_id|>"
    return out


def _chatglm(c: Conversation) -> str:
    round_add = 1 if c.template.name == "chatglm2" else 0
    sep = c.template.sep
    out = c.system_prompt + sep if c.system_prompt else ""
    for i, (role, msg) in enumerate(c.turns):
        if i % 2 == 0:
            out += f"[Round {i // 2 + round_add}]{sep}"
        out += f"{role}\uff1a{msg}{sep}" if msg else f"{role}\uff1a"
    return out


def _chatml(c: Conversation) -> str:
    sep = c.template.sep
    out = "" if c.system_prompt == "" else c.system_prompt + sep + "\n"
    for role, msg in c.turns:
        out += f"{role}\n{msg}{sep}\n" if msg else f"{role}\n"
    return out


def _chatglm3(c: Conversation) -> str:
    out = c.system_prompt if c.system_message else ""
    for role, msg in c.turns:
        out += f"{role}\n{msg}" if msg else role
    return out


def _chatintern(c: Conversation) -> str:
    seps = c.seps()
    out = c.system_prompt
    for i, (role, msg) in enumerate(c.turns):
        if i % 2 == 0:
            out += "<s>"
        out += f"{role}:{msg}{seps[i % 2]}\n" if msg else f"{role}:"
    return out


def _dolly(c: Conversation) -> str:
    seps = c.seps()
    out = c.system_prompt
    for i, (role, msg) in enumerate(c.turns):
        if msg:
            out += f"{role}:\n{msg}{seps[i % 2]}" + ("\n\n" if i % 2 == 1 else "")
        else:
            out += f"{role}:\n"
    return out


def _phoenix(c: Conversation) -> str:
    out = c.system_prompt
    for role, msg in c.turns:
        out += f"{role}: <s>{msg}</s>" if msg else f"{role}: <s>"
    return out


def _robin(c: Conversation) -> str:
    out = c.system_prompt + c.template.sep
    for role, msg in c.turns:
        out += f"{role}:\n{msg}{c.template.sep}" if msg else f"{role}:\n"
    return out


def _falcon_chat(c: Conversation) -> str:
    out = c.system_prompt + c.template.sep if c.system_message else ""
    for role, msg in c.turns:
        out += f"{role}: {msg}{c.template.sep}" if msg else f"{role}:"
    return out


def _metamath(c: Conversation) -> str:
    sep, sep2 = c.seps()
    out = "" if c.system_prompt == "" else c.system_prompt + sep
    for i, (role, msg) in enumerate(c.turns):
        starting = ":\n" if i % 2 == 0 else ": " + sep2
        ending = sep if i % 2 == 0 else ""
        out += role + starting + (msg + ending if msg else "")
    return out


def _yuan2(c: Conversation) -> str:
    seps = c.seps()
    out = c.system_prompt + seps[1] if c.system_message else ""
    for _role, msg in c.turns:
        if msg:
            out += msg + "<n>"
    return out.rstrip("<n>") + seps[0]


def _gemma(c: Conversation) -> str:
    out = "<bos>"
    for role, msg in c.turns:
        out += f"<start_of_turn>{role}\n{msg}{c.template.sep}" if msg else \
            f"<start_of_turn>{role}\n"
    return out


def _deepseek(c: Conversation) -> str:
    seps = c.seps()
    out = c.system_prompt
    for i, (role, msg) in enumerate(c.turns):
        out += f"{role}: {msg}{seps[i % 2]}" if msg else f"{role}:"
    return out


def _cllm(c: Conversation) -> str:
    return _colon_two(Conversation(c.template, c.system_message, c.turns[-2:]))


def _default(c: Conversation) -> str:
    out = c.system_prompt + "\n"
    for role, msg in c.turns:
        out += f"{role}: {msg}\n" if msg else f"{role}:"
    return out


_RENDERERS: dict[SeparatorStyle, Renderer] = {
    SeparatorStyle.ADD_COLON_SINGLE: _colon_single,
    SeparatorStyle.ADD_COLON_TWO: _colon_two,
    SeparatorStyle.ADD_COLON_SPACE_SINGLE: _colon_space_single,
    SeparatorStyle.NO_COLON_SINGLE: _no_colon_single,
    SeparatorStyle.NO_COLON_TWO: _no_colon_two,
    SeparatorStyle.ADD_NEW_LINE_SINGLE: _new_line_single,
    SeparatorStyle.LLAMA2: _llama2,
    SeparatorStyle.LLAMA3: _llama3,
    SeparatorStyle.CHATGLM: _chatglm,
    SeparatorStyle.CHATML: _chatml,
    SeparatorStyle.CHATINTERN: _chatintern,
    SeparatorStyle.DOLLY: _dolly,
    SeparatorStyle.RWKV: _rwkv,
    SeparatorStyle.PHOENIX: _phoenix,
    SeparatorStyle.ROBIN: _robin,
    SeparatorStyle.FALCON_CHAT: _falcon_chat,
    SeparatorStyle.CHATGLM3: _chatglm3,
    SeparatorStyle.DEEPSEEK_CHAT: _deepseek,
    SeparatorStyle.METAMATH: _metamath,
    SeparatorStyle.YUAN2: _yuan2,
    SeparatorStyle.GEMMA: _gemma,
    SeparatorStyle.CLLM: _cllm,
    SeparatorStyle.DEFAULT: _default,
}


def render_prompt(template: ConvTemplate, messages: Sequence[JobMessage], *,
                  numbering: SepStyleNumbering = "release") -> str:
    """The prompt FastChat's API server would send for ``messages`` with ``template``, or the
    one the model's own chat template gives when the worker sent it.

    ``numbering`` is the FastChat version whose ``sep_style`` numbers the workers send, for the
    numbers the template's name leaves ambiguous."""
    if template.chat_template is not None:
        return render_chat_template(template, messages)
    style = resolve_style(template.sep_style, template.name, numbering)
    if len(template.roles) < 2:
        raise WorkerError("the worker's template has fewer than two roles")
    user, assistant = template.roles[0], template.roles[1]
    system = template.system_message
    turns: list[tuple[str, str | None]] = [(str(m[0]), m[1]) for m in template.messages if m]
    for message in messages:
        if message.role in ("system", "developer"):
            system = message.content
        elif message.role == "user":
            turns.append((user, message.content))
        elif message.role == "assistant":
            turns.append((assistant, message.content))
        else:
            raise RequestError(f"unsupported message role {message.role!r}", param="messages")
    turns.append((assistant, None))
    return _RENDERERS[style](Conversation(template, system, turns))


def merge_stops(requested: Sequence[str], template: ConvTemplate) -> list[str]:
    """The request's stop strings, then the template's, each once, in a stable order."""
    return list(dict.fromkeys([*requested, *template.stop_strings()]))
