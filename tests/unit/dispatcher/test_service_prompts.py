"""The prompt a worker receives follows its template: either FastChat version's numbering, or
the model's own chat template; a template that refuses the conversation fails the job as a 400."""

from __future__ import annotations

import dataclasses
import time

import pytest

from contracts.errors import RequestError
from contracts.jobs import Job, JobKind, JobMessage, SamplingParams
from dispatcher.replies import ReplySink
from dispatcher.service import DispatchService
from tests.unit.dispatcher.fakes import ScriptedWorkers

CHATML = {"system_template": "<|im_start|>system\n{system_message}",
          "system_message": "You are a helpful assistant.",
          "roles": ["<|im_start|>user", "<|im_start|>assistant"], "messages": [], "offset": 0,
          "sep": "<|im_end|>", "sep2": None, "stop_str": "<|im_end|>", "stop_token_ids": None}
EXPECTED = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def chat(*messages: JobMessage) -> Job:
    return Job(id="j1", kind=JobKind.CHAT, model="m",
               messages=list(messages) or [JobMessage(role="user", content="hi")],
               params=SamplingParams(max_tokens=10), deadline=time.time() + 30)


async def run(service: DispatchService, job: Job) -> None:
    async def send(_reply: object) -> None:
        return None

    await service.run(job, ReplySink(job_id=job.id, attempt="a", stream=False, send=send))


@pytest.mark.parametrize("sep_style", [9, 10], ids=["fschat-0.2.36", "fastchat-main"])
async def test_qwen_worker_of_either_version_gets_chatml(
        service: DispatchService, scripted_workers: ScriptedWorkers, sep_style: int) -> None:
    scripted_workers.template = {"name": "qwen-7b-chat", "sep_style": sep_style, **CHATML}
    await run(service, chat())
    assert scripted_workers.bodies[0]["prompt"] == EXPECTED
    assert scripted_workers.bodies[0]["stop"] == ["<|im_end|>"]


async def test_setting_decides_for_a_template_fastchat_does_not_register(
        service: DispatchService, scripted_workers: ScriptedWorkers) -> None:
    scripted_workers.template = {"name": "house-chatml", "sep_style": 10, **CHATML}
    await run(dataclasses.replace(service, sep_styles="main"), chat())
    assert scripted_workers.bodies[0]["prompt"] == EXPECTED


async def test_the_models_own_chat_template_renders_the_prompt(
        service: DispatchService, scripted_workers: ScriptedWorkers) -> None:
    scripted_workers.template = {
        "name": "chatml", "sep_style": 9, **CHATML, "bos_token": "<s>",
        "chat_template": "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}"
                         "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"}
    await run(service, chat())
    assert scripted_workers.bodies[0]["prompt"] == "<s><user>hi<assistant>"


async def test_a_chat_template_that_refuses_fails_the_job_before_generating(
        service: DispatchService, scripted_workers: ScriptedWorkers) -> None:
    scripted_workers.template = {
        "name": "gemma", "sep_style": 21,
        "chat_template": "{% if messages[0].role == 'system' %}"
                         "{{ raise_exception('System role not supported') }}{% endif %}"}
    with pytest.raises(RequestError, match="System role not supported") as caught:
        await run(service, chat(JobMessage(role="system", content="s"),
                                JobMessage(role="user", content="hi")))
    assert caught.value.status_code == 400
    assert scripted_workers.bodies == []
