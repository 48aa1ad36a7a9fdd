"""The FastChat conversation template that matches a GGUF model's own chat template."""

from __future__ import annotations

from typing import Any

import jinja2

from contracts.fastchat import ConvTemplate

_PROBE = "\x00probe\x00"

KNOWN: dict[str, dict[str, Any]] = {
    "chatml": {"name": "chatml", "system_template": "<|im_start|>system\n{system_message}",
               "roles": ["<|im_start|>user", "<|im_start|>assistant"], "sep_style": 10,
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
_MARKERS = (("<|im_start|>", "chatml"), ("<|start_header_id|>", "llama-3"),
            ("<start_of_turn>", "gemma"), ("[INST]", "mistral"))


class TemplateError(Exception):
    pass


def _default_system(chat_template: str, name: str) -> str:
    """The system message the model's template adds when the conversation has none."""
    if name != "chatml":
        return ""
    try:
        rendered = jinja2.Environment(autoescape=False).from_string(chat_template).render(
            messages=[{"role": "user", "content": _PROBE}], add_generation_prompt=True,
            bos_token="", eos_token="")
    except jinja2.TemplateError:
        return ""
    head = "<|im_start|>system\n"
    if rendered.startswith(head) and "<|im_end|>" in rendered:
        return rendered[len(head):rendered.index("<|im_end|>")]
    return ""


def conv_template(chat_template: str | None, *, override: str | None = None,
                  stop_token_ids: list[int] | None = None) -> ConvTemplate:
    """Map a GGUF's Jinja chat template (or a named override) onto a FastChat template."""
    name = override
    if name is None:
        if not chat_template:
            raise TemplateError("the model file has no chat template; pass --conv-template "
                                f"({', '.join(KNOWN)})")
        name = next((n for marker, n in _MARKERS if marker in chat_template), None)
        if name is None:
            raise TemplateError("the model's chat template is not one mqgate knows; pass "
                                f"--conv-template ({', '.join(KNOWN)})")
    if name not in KNOWN:
        raise TemplateError(f"unknown conversation template {name!r}; choose from "
                            f"{', '.join(KNOWN)}")
    fields = dict(KNOWN[name])
    fields["system_message"] = _default_system(chat_template or "", name)
    fields["stop_token_ids"] = stop_token_ids
    return ConvTemplate.model_validate(fields)
