"""Scheduling through the real processes: a model's flood never stalls another model,
``priority`` jobs overtake waiting ``default`` ones, a waiting stream is told its place."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import cleanup_namespace
from tests.e2e.prompts import vicuna
from tests.e2e.test_queue import wait_log
from tests.fakeworker import expected_text
from tests.stack import Stack

pytestmark = pytest.mark.e2e

SLOW = "[[delay=0.5]] [[tokens=4]]"  # two seconds at the worker


@pytest.fixture
def two_models(services: None, tmp_path: Path) -> Iterator[Stack]:
    """One worker per model (capacity belongs to a worker), one generation at a time each,
    one dispatcher."""
    stack = Stack(tmp_path, env_extra={"MQGATE_WORKER_CONCURRENCY": "1"})
    try:
        stack.start_controller()
        stack.start_worker("busy", ["busy"])
        stack.start_worker("quiet", ["quiet"])
        stack.wait_models(["busy", "quiet"])
        dispatcher = stack.start_dispatcher()
        wait_log(dispatcher, "following the lane of quiet")
        wait_log(dispatcher, "following the lane of busy")
        stack.start_api()
        yield stack
    finally:
        stack.stop()
        asyncio.run(cleanup_namespace(stack.namespace, ["busy", "quiet"]))


def chat(stack: Stack, model: str, content: str, **extra: object) -> httpx.Response:
    return httpx.post(stack.base_url + "/v1/chat/completions", timeout=120, json={
        "model": model, "messages": [{"role": "user", "content": content}], **extra})


def test_a_quiet_model_is_answered_while_a_busy_models_jobs_wait(two_models: Stack) -> None:
    stack = two_models
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        flood = [pool.submit(chat, stack, "busy", f"flood {i} {SLOW}") for i in range(6)]
        stack.wait_queued(4, model="busy")
        quiet = chat(stack, "quiet", "and me?")
        assert quiet.status_code == 200, quiet.text
        assert stack.queued_jobs("busy") >= 1  # the flood still waits in its own lane
        assert all(f.result().status_code == 200 for f in flood)
    assert quiet.json()["choices"][0]["message"]["content"] == expected_text(
        vicuna("and me?"))[0]


def test_a_priority_job_overtakes_the_default_jobs_waiting(two_models: Stack) -> None:
    stack = two_models
    worker = stack.workers["busy"]
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        running = pool.submit(chat, stack, "busy", f"first {SLOW}")
        worker.wait_generating()
        waiting = [pool.submit(chat, stack, "busy", f"default {i}") for i in range(3)]
        stack.wait_queued(3, model="busy")
        urgent = pool.submit(chat, stack, "busy", "urgent", service_tier="priority")
        answers = [f.result() for f in (running, *waiting, urgent)]
    assert [a.status_code for a in answers] == [200] * 5
    assert answers[-1].json()["service_tier"] == "priority"
    assert answers[1].json()["service_tier"] == "default"
    prompts = [p for p in worker.stats()["prompts"] if "default" in p or "urgent" in p]
    assert "urgent" in prompts[0], prompts  # forwarded before the three that waited longer


def test_a_waiting_stream_is_told_its_place_in_the_queue(two_models: Stack) -> None:
    stack = two_models
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        pool.submit(chat, stack, "busy", f"first {SLOW}")
        stack.workers["busy"].wait_generating()
        pool.submit(chat, stack, "busy", f"second {SLOW}")
        stack.wait_queued(1, model="busy")
        with httpx.stream("POST", stack.base_url + "/v1/chat/completions", timeout=120, json={
                "model": "busy", "stream": True,
                "messages": [{"role": "user", "content": "third"}]}) as response:
            lines = [line for line in response.iter_lines() if line]
    places = [int(line.rsplit("=", 1)[1]) for line in lines
              if line.startswith(": queued position=")]
    assert places, lines
    assert places == sorted(places, reverse=True)  # it only ever moves forward
    assert places[0] in (1, 2)
    assert lines[-1] == "data: [DONE]"
    assert not any('"error"' in line for line in lines)


def test_tiers_with_the_official_sdk(two_models: Stack) -> None:
    with openai.OpenAI(base_url=two_models.base_url + "/v1", api_key="unused",
                       max_retries=0, timeout=60) as client:
        flex = client.chat.completions.create(
            model="quiet", service_tier="flex", messages=[{"role": "user", "content": "x"}])
        assert flex.service_tier == "flex"
        auto = client.chat.completions.create(
            model="quiet", service_tier="auto", messages=[{"role": "user", "content": "x"}])
        assert auto.service_tier == "default"
        chunks = list(client.chat.completions.create(
            model="quiet", service_tier="priority", stream=True,
            messages=[{"role": "user", "content": "x"}]))
        assert {c.service_tier for c in chunks} == {"priority"}
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="quiet", service_tier="scale",
                messages=[{"role": "user", "content": "x"}])
    assert refused.value.param == "service_tier"
