"""Which separator style a worker means by the number it sends, for either FastChat version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.errors import WorkerError
from contracts.fastchat import ConvTemplate, SepStyleNumbering
from contracts.jobs import JobMessage
from contracts.settings import Settings
from dispatcher.prompt import render_prompt
from dispatcher.sep_style import NUMBERINGS, TEMPLATE_STYLES, SeparatorStyle, resolve_style

S = SeparatorStyle
GOLDEN = Path(__file__).with_name("golden")
BOTH: tuple[SepStyleNumbering, ...] = ("release", "main")


def fixture(version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (GOLDEN / f"fastchat_{version}.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("version", BOTH)
def test_numberings_are_fastchats(version: SepStyleNumbering) -> None:
    recorded = fixture(version)["sep_styles"]
    assert {number: style.name for number, style in NUMBERINGS[version].items()} == {
        number: name for name, number in recorded.items()}


@pytest.mark.parametrize("numbering", BOTH)
def test_numbers_both_versions_agree_on_need_no_name(numbering: SepStyleNumbering) -> None:
    assert resolve_style(2, "anything", numbering) is S.ADD_COLON_TWO
    assert resolve_style(7, "anything", numbering) is S.LLAMA2
    assert resolve_style(21, "anything", numbering) is S.GEMMA  # only main has 20 to 23
    assert resolve_style(23, "", numbering) is S.DEFAULT


@pytest.mark.parametrize("numbering", BOTH)
def test_a_registered_name_decides_an_ambiguous_number(numbering: SepStyleNumbering) -> None:
    assert resolve_style(9, "qwen-7b-chat", numbering) is S.CHATML  # as fschat 0.2.36 sends
    assert resolve_style(10, "qwen-7b-chat", numbering) is S.CHATML  # as git main sends
    assert resolve_style(8, "llama-3", numbering) is S.LLAMA3
    assert resolve_style(8, "chatglm2", numbering) is S.CHATGLM
    assert resolve_style(16, "chatglm3", numbering) is S.CHATGLM3
    assert resolve_style(17, "chatglm3", numbering) is S.CHATGLM3
    assert resolve_style(17, "deepseek-chat", numbering) is S.DEEPSEEK_CHAT


def test_an_unknown_name_follows_the_setting() -> None:
    assert resolve_style(9, "my-own-template", "release") is S.CHATML
    assert resolve_style(9, "my-own-template", "main") is S.CHATGLM
    assert resolve_style(9, "my-own-template") is S.CHATML  # the release by default
    # a known name whose number fits neither version's style for it: the setting too
    assert resolve_style(12, "qwen-7b-chat", "release") is S.RWKV
    assert resolve_style(12, "qwen-7b-chat", "main") is S.DOLLY


@pytest.mark.parametrize("number", [0, 24, -1])
def test_a_number_neither_version_has_is_a_worker_error(number: int) -> None:
    with pytest.raises(WorkerError, match=f"unknown sep_style {number}"):
        resolve_style(number, "qwen-7b-chat")


def test_name_table_is_fastchats_for_every_ambiguous_number() -> None:
    """Every registered template whose number the two versions read differently is in the
    table with FastChat's own style, and the table names nothing FastChat does not register
    (but the bundled worker's ChatML family)."""
    ambiguous = {n for n in NUMBERINGS["release"]
                 if NUMBERINGS["release"][n] is not NUMBERINGS["main"][n]}
    registered: dict[str, str] = {}
    for version in BOTH:
        for entry in fixture(version)["templates"]:
            payload = entry["payload"]
            if payload is None:
                continue
            registered[payload["name"]] = entry["style"]
            if payload["sep_style"] in ambiguous:
                assert TEMPLATE_STYLES[payload["name"]].name == entry["style"]
    assert {name: style.name for name, style in TEMPLATE_STYLES.items() if name != "chatml"} \
        == {name: registered[name] for name in TEMPLATE_STYLES if name != "chatml"}


def test_setting_main_renders_an_unnamed_main_worker() -> None:
    custom = ConvTemplate(name="my-chatml", system_template="<|im_start|>system\n{system_message}",
                          roles=["<|im_start|>user", "<|im_start|>assistant"], sep_style=10,
                          sep="<|im_end|>")
    turns = [JobMessage(role="user", content="hi")]
    assert render_prompt(custom, turns, numbering="main") == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    # read as the release, 10 is CHATINTERN
    assert render_prompt(custom, turns, numbering="release") == (
        "<|im_start|>system\n<s><|im_start|>user:hi<|im_end|>\n<|im_start|>assistant:")


def test_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().fastchat_sep_styles == "release"
    monkeypatch.setenv("MQGATE_FASTCHAT_SEP_STYLES", "main")
    assert Settings().fastchat_sep_styles == "main"
    monkeypatch.setenv("MQGATE_FASTCHAT_SEP_STYLES", "0.2.35")
    with pytest.raises(ValidationError):
        Settings()
