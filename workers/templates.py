"""The conversation template the bundled worker announces for a GGUF model.

The worker sends the GGUF's own Jinja chat template (``tokenizer.chat_template``) with the
model's BOS and EOS tokens, and mqgate's dispatchers render every prompt with it, as llama.cpp
and transformers do: any chat model with a template runs. FastChat's own fields ride along for
FastChat-protocol clients, which read nothing else: the matching FastChat template when the
chat template is of one of four families recognised by marker strings, else a plain one.

``--conv-template`` names one of those four FastChat templates instead, for a GGUF without a
chat template or to override it; then FastChat's fields are the whole template. ``sep_style``
numbers are those of fschat 0.2.36, FastChat's release, except for llama-3 and gemma, which only
FastChat's git main has (mqgate reads both: see dispatcher.sep_style).
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from contracts.fastchat import ConvTemplate
from workers.files import ModelFileError

_PROBE = "\x00probe\x00"

KNOWN: dict[str, dict[str, Any]] = {
    "chatml": {"name": "chatml", "system_template": "<|im_start|>system\n{system_message}",
               "roles": ["<|im_start|>user", "<|im_start|>assistant"], "sep_style": 9,
               "sep": "<|im_end|>", "stop_str": "<|im_end|>"},
    "llama-3": {"name": "llama-3",
                "system_template": "<|start_header_id|>system<|end_header_id|>\n\n"
                                   "{system_message}<|eot_id|>",
                "roles": ["user", "assistant"], "sep_style": 8, "sep": "",
                "stop_str": "<|eot_id|>"},
    "gemma": {"name": "gemma", "roles": ["user", "model"], "sep_style": 21,
              "sep": "<end_of_turn>\n", "stop_str": "<end_of_turn>"},
    "mistral": {"name": "mistral", "system_template": "[INST] {system_message}\n",
                "roles": ["[INST]", "[/INST]"], "sep_style": 7, "sep": " ", "sep2": "</s>"},
}
# FastChat's fields for a chat template of no known family: FastChat's defaults
_PLAIN: dict[str, Any] = {"name": "gguf", "roles": ["user", "assistant"], "sep_style": 1,
                          "sep": "\n"}
_MARKERS = (("<|im_start|>", "chatml"), ("<|start_header_id|>", "llama-3"),
            ("<start_of_turn>", "gemma"), ("[INST]", "mistral"))


class TemplateError(ModelFileError):
    """The model file's chat template cannot serve, and no FastChat template was named."""


class _GenerationTag(Extension):
    """transformers' ``{% generation %}`` tag, so that templates using it parse."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


_SANDBOX = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                         extensions=[_GenerationTag, loopcontrols])


def _parsed(chat_template: str) -> jinja2.Template:
    try:
        return _SANDBOX.from_string(chat_template)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"the model's chat template does not parse ({exc}); pass "
                            f"--conv-template ({', '.join(KNOWN)})") from exc


def _default_system(chat_template: jinja2.Template | None, name: str) -> str:
    """The system message the model's template adds when the conversation has none."""
    if name != "chatml" or chat_template is None:
        return ""
    try:
        rendered = chat_template.render(
            messages=[{"role": "user", "content": _PROBE}], add_generation_prompt=True,
            bos_token="", eos_token="")
    except Exception:  # noqa: BLE001 - a template that needs more context has no default
        return ""
    head = "<|im_start|>system\n"
    if rendered.startswith(head) and "<|im_end|>" in rendered:
        return rendered[len(head):rendered.index("<|im_end|>")]
    return ""


def conv_template(chat_template: str | None, *, override: str | None = None,
                  stop_token_ids: list[int] | None = None, bos_token: str = "",
                  eos_token: str = "") -> ConvTemplate:
    """The template for a GGUF with ``chat_template`` (its Jinja source, if any), or for the
    FastChat template named ``override``."""
    if override is not None:
        if override not in KNOWN:
            raise TemplateError(f"unknown conversation template {override!r}; choose from "
                                f"{', '.join(KNOWN)}")
        fields = dict(KNOWN[override])
        try:
            parsed = _parsed(chat_template) if chat_template else None
        except TemplateError:
            parsed = None  # overridden: the model's own template does not matter
        fields["system_message"] = _default_system(parsed, override)
    elif chat_template:
        family = next((n for marker, n in _MARKERS if marker in chat_template), None)
        fields = dict(KNOWN[family]) if family else dict(_PLAIN)
        fields["system_message"] = _default_system(_parsed(chat_template), family or "")
        fields.update(chat_template=chat_template, bos_token=bos_token, eos_token=eos_token)
    else:
        raise TemplateError("the model file has no chat template; pass --conv-template "
                            f"({', '.join(KNOWN)})")
    fields["stop_token_ids"] = stop_token_ids
    return ConvTemplate.model_validate(fields)
