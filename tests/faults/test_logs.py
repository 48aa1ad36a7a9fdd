"""No prompt text and no API key reaches a log line, even at DEBUG."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.faults

KEY = "sk-secret-key-0c7e"
PROMPT = "PRIVATE-PROMPT-e21f"


def test_debug_logs_carry_no_prompt_and_no_key(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(MQGATE_LOG_LEVEL="DEBUG", MQGATE_API_KEYS=KEY)
    stack.api_key = KEY
    stack.start_serving_fake("w")
    headers = {"Authorization": f"Bearer {KEY}"}
    for body in ({"model": "fake", "messages": [{"role": "user", "content": PROMPT}]},
                 {"model": "fake", "stream": True,
                  "messages": [{"role": "user", "content": PROMPT}]},
                 {"model": "fake",
                  "messages": [{"role": "user", "content": f"{PROMPT} [[error]]"}]},
                 {"model": "fake", "messages": [{"role": "wizard", "content": PROMPT}]},
                 {"model": "nope", "messages": [{"role": "user", "content": PROMPT}]}):
        httpx.post(stack.base_url + "/v1/chat/completions", json=body, headers=headers,
                   timeout=30)
    httpx.post(stack.base_url + "/v1/embeddings", json={"model": "fake", "input": PROMPT},
               headers=headers, timeout=30)
    httpx.get(stack.base_url + "/v1/models", headers={"Authorization": f"Bearer {KEY}x"},
              timeout=30)
    for proc in stack.procs:
        if proc.name.startswith("worker-"):
            continue  # the test worker is not mqgate
        text = proc.log.read_text(errors="replace")
        assert "debug" in text.lower() or proc.name == "controller"
        assert PROMPT not in text, proc.name
        assert KEY not in text, proc.name
