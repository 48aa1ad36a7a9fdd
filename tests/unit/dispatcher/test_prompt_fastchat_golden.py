"""Every template FastChat registers renders byte for byte as FastChat's own server renders it.

The fixtures in golden/ come from FastChat itself (golden/make_fastchat_prompts.py says how):
for fschat 0.2.36, the release that ``pip install fschat`` gives, and for FastChat's git main,
each registered template's ``/worker_get_conv_template`` payload as a worker sends it, and the
prompt openai_api_server builds from it. The two versions number ``sep_style`` differently, and
the gateway must get both right with its default settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contracts.fastchat import ConvTemplate
from contracts.jobs import JobMessage
from dispatcher.prompt import render_prompt

GOLDEN = Path(__file__).with_name("golden")
VERSIONS = ("release", "main")

# Templates FastChat registers but cannot serve from a worker: API-model templates without a
# sep_style, which base_model_worker turns into an int before it can send them.
FASTCHAT_CANNOT = {
    "release": {"bard", "chatgpt", "gemini", "pplxai", "steerlm"},
    "main": {"yandexgpt"},
}


def load(version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (GOLDEN / f"fastchat_{version}.json").read_text(encoding="utf-8"))
    return data


FIXTURES = {version: load(version) for version in VERSIONS}


def cases() -> list[Any]:
    out = []
    for version, data in FIXTURES.items():
        for entry in data["templates"]:
            for case, prompt in entry.get("prompts", {}).items():
                out.append(pytest.param(version, entry["payload"], data["conversations"][case],
                                        prompt, id=f"{version}-{entry['registered_as']}-{case}"))
    return out


def messages(conversation: list[dict[str, str]]) -> list[JobMessage]:
    return [JobMessage(role=m["role"], content=m["content"]) for m in conversation]


@pytest.mark.parametrize(("version", "payload", "conversation", "expected"), cases())
def test_prompt_is_what_fastchat_builds(version: str, payload: dict[str, Any],
                                        conversation: list[dict[str, str]],
                                        expected: str) -> None:
    template = ConvTemplate.model_validate(payload)
    assert render_prompt(template, messages(conversation)) == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_fixtures_cover_every_template_fastchat_registers(version: str) -> None:
    entries = FIXTURES[version]["templates"]
    unservable = {e["registered_as"] for e in entries if "fastchat_fails" in e}
    assert unservable == FASTCHAT_CANNOT[version]
    rendered = [e for e in entries if "fastchat_fails" not in e]
    assert all(set(e["prompts"]) == {"system", "no_system"} for e in rendered)
    assert len(rendered) >= (78 if version == "release" else 100)


def test_release_qwen_worker_sends_9_and_gets_chatml() -> None:
    entry = next(e for e in FIXTURES["release"]["templates"]
                 if e["registered_as"] == "qwen-7b-chat")
    assert entry["payload"]["sep_style"] == 9
    prompt = render_prompt(ConvTemplate.model_validate(entry["payload"]),
                           messages(FIXTURES["release"]["conversations"]["system"]))
    assert prompt.startswith("<|im_start|>system\nYou are a terse assistant.")
    assert prompt.endswith("<|im_start|>assistant\n")
