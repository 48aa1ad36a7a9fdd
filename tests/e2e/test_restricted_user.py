"""The whole stack answers when its api and dispatcher run as a RabbitMQ user whose rights
are ``^<namespace>\\.`` only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import AMQP_URL
from tests.rabbitmq_user import restricted_user
from tests.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(namespace: str, tmp_path: Path) -> Iterator[Stack]:
    with restricted_user(AMQP_URL, namespace) as url:
        s = Stack(tmp_path, namespace=namespace, env_extra={"MQGATE_AMQP_URL": url})
        try:
            yield s.start_serving_fake("a")
        finally:
            s.stop()


def test_chat_streamed_and_not_as_the_restricted_user(stack: Stack) -> None:
    with openai.OpenAI(base_url=stack.base_url + "/v1", api_key="unused", max_retries=0,
                       timeout=30) as client:
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [
            {"role": "user", "content": "hello"}]
        reply = client.chat.completions.create(model="fake", messages=messages, max_tokens=8)
        assert reply.choices[0].message.content
        chunks = client.chat.completions.create(model="fake", messages=messages, max_tokens=8,
                                                stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content
