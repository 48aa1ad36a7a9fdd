"""MQGATE_AMQP_URL with one URL per node: a process starts on a node that answers, whichever
nodes of the list are down."""

from __future__ import annotations

import time

import pytest

from consumers.rabbitmq import RabbitJobQueue
from consumers.reply_router import ReplyRouter
from contracts.jobs import Job, JobKind
from contracts.settings import Settings
from tests.conftest import AMQP_URL
from tests.stack import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("first", [0, 1, 2])
async def test_a_node_that_is_down_is_passed_over(settings: Settings, first: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    nodes = settings.model_copy(update={"amqp_url": f"{dead},{dead},{AMQP_URL}"})
    monkeypatch.setattr("consumers.rabbitmq.random_node", lambda _urls: first)
    async with RabbitJobQueue(nodes, ReplyRouter(), connect_timeout=10) as queue:
        assert await queue.ping()
        await queue.publish_job(Job(id=f"j{first}", kind=JobKind.CHAT, model="m",
                                    prompts=["p"], deadline=time.time() + 30))
