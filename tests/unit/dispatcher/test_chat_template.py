"""Models' own chat templates render as transformers' apply_chat_template renders them.

golden/chat_templates.json holds real chat templates (SmolLM2, Qwen2.5, Llama 3, 3.1 and 3.2,
Gemma 2 and 3, Mixtral, Phi-3.5) and what transformers renders for three conversations, or the
error it raises (golden/make_chat_template_prompts.py says how they were made).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import RequestError, WorkerError
from contracts.fastchat import ConvTemplate
from contracts.jobs import JobMessage
from dispatcher.chat_template import render_chat_template
from dispatcher.prompt import render_prompt

FIXTURE: dict[str, Any] = json.loads(
    Path(__file__).with_name("golden").joinpath("chat_templates.json").read_text(
        encoding="utf-8"))
NOW = datetime.fromisoformat(FIXTURE["date"])
HI = [JobMessage(role="user", content="hi")]


def messages(conversation: list[dict[str, str]]) -> list[JobMessage]:
    return [JobMessage(role=m["role"], content=m["content"]) for m in conversation]


def template(entry: dict[str, Any]) -> ConvTemplate:
    return ConvTemplate(chat_template=entry["chat_template"], bos_token=entry["bos_token"],
                        eos_token=entry["eos_token"])


def jinja(source: str, **fields: Any) -> ConvTemplate:
    return ConvTemplate(chat_template=source, **fields)


def golden(kind: str) -> list[Any]:
    return [pytest.param(entry, FIXTURE["conversations"][case], expected[kind],
                         id=f"{entry['model'].split(' ')[0]}-{case}")
            for entry in FIXTURE["templates"] for case, expected in entry["expected"].items()
            if kind in expected]


@pytest.mark.parametrize(("entry", "conversation", "expected"), golden("prompt"))
def test_prompt_is_what_transformers_renders(entry: dict[str, Any],
                                             conversation: list[dict[str, str]],
                                             expected: str) -> None:
    assert render_chat_template(template(entry), messages(conversation), now=NOW) == expected


@pytest.mark.parametrize(("entry", "conversation", "expected"), golden("error"))
def test_a_template_that_refuses_is_the_requests_fault(entry: dict[str, Any],
                                                       conversation: list[dict[str, str]],
                                                       expected: str) -> None:
    with pytest.raises(RequestError) as caught:
        render_chat_template(template(entry), messages(conversation), now=NOW)
    assert caught.value.status_code == 400
    assert str(caught.value) == f"the model's chat template refuses this conversation: {expected}"


def test_fixtures_cover_the_families() -> None:
    models = " ".join(entry["model"] for entry in FIXTURE["templates"])
    for family in ("SmolLM2", "Qwen2.5", "Llama-3", "gemma-2", "gemma-3", "Mixtral", "Phi-3"):
        assert family in models
    assert "14 Mar 2025" in json.dumps(FIXTURE)  # Llama 3.2 printed the pinned date


def test_render_prompt_prefers_the_models_own_template() -> None:
    conv = ConvTemplate(name="qwen-7b-chat", sep_style=9, sep="<|im_end|>",
                        chat_template="{% for m in messages %}[{{ m.role }}]{{ m.content }}"
                                      "{% endfor %}{% if add_generation_prompt %}[bot]{% endif %}")
    assert render_prompt(conv, [JobMessage(role="system", content="s"), *HI]) == \
        "[system]s[user]hi[bot]"


def test_developer_is_system() -> None:
    conv = jinja("{% for m in messages %}{{ m['role'] }}:{{ m['content'] }};{% endfor %}")
    developer = [JobMessage(role="developer", content="be brief"), *HI]
    assert render_chat_template(conv, developer) == "system:be brief;user:hi;"


def test_an_unknown_role_is_the_requests_fault() -> None:
    with pytest.raises(RequestError, match="unsupported message role 'tool'"):
        render_chat_template(jinja("{{ messages }}"), [JobMessage(role="tool", content="x")])


def test_bos_and_eos_tokens_are_the_models() -> None:
    conv = jinja("{{ bos_token }}{{ messages[0].content }}{{ eos_token }}", bos_token="<s>",
                 eos_token="</s>")
    assert render_chat_template(conv, HI) == "<s>hi</s>"


def test_tojson_keeps_text_as_it_is() -> None:
    conv = jinja("{{ messages[0] | tojson }}|{{ {'a': 1} | tojson(indent=2) }}")
    text = [JobMessage(role="user", content="<b>Grüße</b> & 'x'")]
    assert render_chat_template(conv, text) == (
        '{"role": "user", "content": "<b>Grüße</b> & \'x\'"}|{\n  "a": 1\n}')


def test_generation_blocks_and_loop_controls_render() -> None:
    conv = jinja("{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
                 "{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}")
    assert render_chat_template(conv, [JobMessage(role="system", content="s"), *HI]) == "hi"


def test_blocks_are_trimmed_as_transformers_trims_them() -> None:
    conv = jinja("{% for m in messages %}\n  {% if true %}\n{{ m.content }}\n  {% endif %}\n"
                 "{% endfor %}")
    assert render_chat_template(conv, HI) == "hi\n"


def test_strftime_now_formats_the_time_of_the_call() -> None:
    conv = jinja("{{ strftime_now('%d %b %Y') }}")
    assert render_chat_template(conv, HI, now=NOW) == "14 Mar 2025"
    assert re.fullmatch(r"\d\d [A-Z][a-z]{2} \d{4}", render_chat_template(conv, HI))


def test_a_template_that_does_not_parse_is_the_workers_fault() -> None:
    with pytest.raises(WorkerError, match="does not parse") as caught:
        render_chat_template(jinja("{% for m in messages %}"), HI)
    assert caught.value.status_code == 502


@pytest.mark.parametrize("source", [
    "{{ messages[0].content + 1 }}",
    "{{ messages[0].nothing.deeper }}",
])
def test_a_template_that_fails_is_the_workers_fault(source: str) -> None:
    with pytest.raises(WorkerError, match="the model's chat template failed"):
        render_chat_template(jinja(source), HI)


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ raise_exception.__globals__['__builtins__'] }}",
    "{% set seen = [] %}{{ seen.append(1) }}",
    "{{ messages.pop() }}",
])
def test_templates_run_in_a_sandbox(source: str) -> None:
    with pytest.raises(WorkerError, match="SecurityError"):
        render_chat_template(jinja(source), HI)


def test_an_unsafe_attribute_is_empty() -> None:
    assert render_chat_template(jinja("{{ raise_exception.__globals__ }}"), HI) == ""
