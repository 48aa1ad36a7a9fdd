"""The template the bundled worker announces for a GGUF, and the prompts it leads to.

Every real chat template of golden/chat_templates.json goes through the worker's payload, the
wire and the gateway's renderer, and comes out as transformers renders it: a GGUF of any of
those families serves chat without any mapping of its own.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from contracts.fastchat import ConvTemplate, ConvTemplateResponse
from contracts.jobs import JobMessage
from dispatcher.chat_template import render_chat_template
from dispatcher.prompt import render_prompt
from workers.templates import KNOWN, TemplateError, conv_template

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "dispatcher" / "golden" / "chat_templates.json").read_text(
        encoding="utf-8"))
NOW = datetime.fromisoformat(GOLDEN["date"])
SMOLLM2 = GOLDEN["templates"][0]
HI = [JobMessage(role="user", content="hi")]


def over_the_wire(template: ConvTemplate) -> ConvTemplate:
    """What a dispatcher reads back from the worker's /worker_get_conv_template."""
    body = json.dumps({"conv": template.model_dump()})
    return ConvTemplateResponse.model_validate_json(body).conv


@pytest.mark.parametrize("entry", GOLDEN["templates"], ids=lambda e: e["model"].split(" ")[0])
def test_any_models_template_renders_as_transformers_renders_it(entry: dict[str, Any]) -> None:
    announced = over_the_wire(conv_template(entry["chat_template"], stop_token_ids=[2],
                                            bos_token=entry["bos_token"],
                                            eos_token=entry["eos_token"]))
    for case, expected in entry["expected"].items():
        if "prompt" in expected:
            messages = [JobMessage(**m) for m in GOLDEN["conversations"][case]]
            assert render_chat_template(announced, messages, now=NOW) == expected["prompt"]


def test_smollm2_announces_its_template_and_chatml_for_fastchat_clients() -> None:
    template = conv_template(SMOLLM2["chat_template"], stop_token_ids=[2],
                             bos_token="<|im_start|>", eos_token="<|im_end|>")
    assert template.chat_template == SMOLLM2["chat_template"]
    assert (template.bos_token, template.eos_token) == ("<|im_start|>", "<|im_end|>")
    # FastChat's fields, for FastChat's own API server: its ChatML, numbered as its release
    assert (template.name, template.sep_style, template.stop_str) == ("chatml", 9, "<|im_end|>")
    assert template.system_message == ("You are a helpful AI assistant named SmolLM, trained by "
                                       "Hugging Face")
    assert template.stop_token_ids == [2]
    assert render_prompt(template, HI) == SMOLLM2["expected"]["one_turn"]["prompt"]


def test_a_template_of_no_known_family_still_serves() -> None:
    phi = next(e for e in GOLDEN["templates"] if "Phi-3" in e["model"])
    template = conv_template(phi["chat_template"], eos_token="<|endoftext|>")
    assert template.name == "gguf"
    assert render_prompt(template, HI) == phi["expected"]["one_turn"]["prompt"]


def test_without_a_chat_template_the_user_must_name_one() -> None:
    with pytest.raises(TemplateError, match="no chat template; pass --conv-template"):
        conv_template(None)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_a_named_template_is_fastchats_only(name: str) -> None:
    template = over_the_wire(conv_template(None, override=name, stop_token_ids=[1]))
    assert template.chat_template is None
    assert template.name == name
    render_prompt(template, HI)  # every one renders under the default numbering


def test_a_named_template_overrides_the_models_own() -> None:
    template = conv_template(SMOLLM2["chat_template"], override="chatml")
    assert template.chat_template is None
    assert template.system_message.startswith("You are a helpful AI assistant named SmolLM")
    assert render_prompt(template, HI) == SMOLLM2["expected"]["one_turn"]["prompt"]


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(TemplateError, match="unknown conversation template 'vicuna'"):
        conv_template(None, override="vicuna")


def test_a_template_that_does_not_parse_fails_at_start() -> None:
    broken = "{% for message in messages %}{{ message.content }}"
    with pytest.raises(TemplateError, match=r"does not parse.*pass --conv-template"):
        conv_template(broken)
    assert conv_template(broken, override="chatml").name == "chatml"


def test_templates_with_generation_blocks_parse() -> None:
    source = ("{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}"
              "{% endfor %}")
    assert render_prompt(conv_template(source), HI) == "hi"
