"""Prompts rendered byte for byte as FastChat renders its real templates."""

from __future__ import annotations

import pytest

from contracts.errors import WorkerError
from contracts.fastchat import ConvTemplate
from contracts.jobs import JobMessage
from dispatcher.prompt import merge_stops, render_prompt

TURNS = [JobMessage(role="system", content="SYS"), JobMessage(role="user", content="hi"),
         JobMessage(role="assistant", content="hello"), JobMessage(role="user", content="q2")]

VICUNA = ConvTemplate(name="vicuna_v1.1", system_message="default", roles=["USER", "ASSISTANT"],
                      sep_style=2, sep=" ", sep2="</s>")
LLAMA2 = ConvTemplate(name="llama-2",
                      system_template="[INST] <<SYS>>\n{system_message}\n<</SYS>>\n\n",
                      roles=["[INST]", "[/INST]"], sep_style=7, sep=" ", sep2=" </s><s>")
MISTRAL = ConvTemplate(name="mistral", system_template="[INST] {system_message}\n",
                       roles=["[INST]", "[/INST]"], sep_style=7, sep=" ", sep2="</s>")
LLAMA3 = ConvTemplate(name="llama-3",
                      system_template="<|start_header_id|>system<|end_header_id|>\n\n"
                                      "{system_message}<|eot_id|>",
                      roles=["user", "assistant"], sep_style=8, sep="", stop_str="<|eot_id|>",
                      stop_token_ids=[128001, 128009])
QWEN = ConvTemplate(name="qwen-7b-chat", system_template="<|im_start|>system\n{system_message}",
                    roles=["<|im_start|>user", "<|im_start|>assistant"], sep_style=10,
                    sep="<|im_end|>", stop_str="<|im_end|>")
CHATGLM3 = ConvTemplate(name="chatglm3", system_template="<|system|>\n{system_message}",
                        roles=["<|user|>", "<|assistant|>"], sep_style=17)
GEMMA = ConvTemplate(name="gemma", roles=["user", "model"], sep_style=21, sep="<end_of_turn>\n")

GOLDEN = [
    (VICUNA, "SYS USER: hi ASSISTANT: hello</s>USER: q2 ASSISTANT:"),
    (LLAMA2, "[INST] <<SYS>>\nSYS\n<</SYS>>\n\nhi [/INST] hello </s><s>[INST] q2 [/INST]"),
    (MISTRAL, "[INST] SYS\nhi [/INST] hello</s>[INST] q2 [/INST]"),
    (LLAMA3, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>"
             "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|>"
             "<|start_header_id|>user<|end_header_id|>\n\nq2<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    (QWEN, "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
           "<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n"
           "<|im_start|>assistant\n"),
    (CHATGLM3, "<|system|>\nSYS<|user|>\nhi<|assistant|>\nhello<|user|>\nq2<|assistant|>"),
    (GEMMA, "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nhello<end_of_turn>\n"
            "<start_of_turn>user\nq2<end_of_turn>\n<start_of_turn>model\n"),
]


@pytest.mark.parametrize(("template", "expected"), GOLDEN, ids=[t.name for t, _ in GOLDEN])
def test_golden_prompts(template: ConvTemplate, expected: str) -> None:
    assert render_prompt(template, TURNS) == expected


def test_llama2_without_system_opens_with_inst() -> None:
    prompt = render_prompt(LLAMA2, [JobMessage(role="user", content="hi")])
    assert prompt == "[INST] hi [/INST]"


def test_few_shot_messages_of_the_template_come_first() -> None:
    one_shot = ConvTemplate(name="one_shot", system_message="S",
                            roles=["### Human", "### Assistant"],
                            messages=[["### Human", "ex q"], ["### Assistant", "ex a"]],
                            offset=2, sep_style=1, sep="\n###")
    prompt = render_prompt(one_shot, [JobMessage(role="user", content="real q")])
    assert prompt == ("S\n###### Human: ex q\n###### Assistant: ex a\n###"
                      "### Human: real q\n###### Assistant:")


def test_last_system_message_wins_and_developer_is_system() -> None:
    prompt = render_prompt(VICUNA, [JobMessage(role="system", content="one"),
                                    JobMessage(role="developer", content="two"),
                                    JobMessage(role="user", content="u")])
    assert prompt == "two USER: u ASSISTANT:"


def test_unknown_sep_style_is_a_worker_error() -> None:
    with pytest.raises(WorkerError):
        render_prompt(ConvTemplate(sep_style=99), TURNS)


def test_stops_merge_in_a_stable_order_without_duplicates() -> None:
    assert merge_stops(["b", "a", "b"], QWEN) == ["b", "a", "<|im_end|>"]
    assert merge_stops([], ConvTemplate(stop_str=["x", "y"])) == ["x", "y"]
    assert merge_stops(["<|im_end|>"], QWEN) == ["<|im_end|>"]
