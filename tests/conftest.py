from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import aio_pika
import pytest
import redis
import redis.asyncio as aioredis

from contracts.settings import Settings
from tests.stack import new_namespace

GUEST_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
# docker compose's RabbitMQ (make services) has the user mqgate, and refuses guest from outside
# its container
COMPOSE_AMQP_URL = "amqp://mqgate:mqgate@127.0.0.1:5672/"


def _default_amqp_url() -> str:
    """guest, unless the local broker refuses guest and takes docker compose's user; then that
    user, for the processes the tests start as well."""

    async def logs_in(url: str) -> bool | None:
        """True or False when the broker answers, None when it does not."""
        try:
            connection = await aio_pika.connect(url, timeout=5)
        except aio_pika.exceptions.ProbableAuthenticationError:
            return False
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
            return None
        await connection.close()
        return True

    quiet = logging.getLogger("aiormq.connection")  # it logs each refused connection
    quiet.disabled = True
    try:
        if asyncio.run(logs_in(GUEST_AMQP_URL)) is not False:
            return GUEST_AMQP_URL
        if asyncio.run(logs_in(COMPOSE_AMQP_URL)):
            os.environ["MQGATE_AMQP_URL"] = COMPOSE_AMQP_URL
            return COMPOSE_AMQP_URL
        return GUEST_AMQP_URL
    finally:
        quiet.disabled = False


AMQP_URL = os.environ.get("MQGATE_AMQP_URL") or _default_amqp_url()
REDIS_URL = os.environ.get("MQGATE_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable() -> str | None:
    """None when RabbitMQ and Redis both answer, else what is wrong."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis at {REDIS_URL} is unreachable: {exc}"

    async def amqp() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(amqp())
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError, socket.gaierror) as exc:
        return f"RabbitMQ at {AMQP_URL} is unreachable: {exc!r}"
    return None


@pytest.fixture(scope="session")
def services() -> None:
    """Real RabbitMQ and Redis: skipped locally when absent, a failure under CI."""
    problem = _reachable()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


# The models whose lanes tests make. A lane of any other model goes a minute after its last
# use: the tests' processes and settings run with this MQGATE_LANE_EXPIRES.
TEST_MODELS = ("m", "fake", "dual", "chatml-model", "tiny", "ghost", "busy", "quiet", "calm",
               "flooded", "gone", "polled", "missing", "nope", "a", "b")
TEST_LANE_EXPIRES = 60.0


async def cleanup_namespace(namespace: str, models: Iterable[str] = ()) -> None:
    """Delete every broker object and Redis key a test run made under ``namespace``."""
    topology = Settings(namespace=namespace).topology
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    try:
        lanes = [topology.lane(model) for model in {*TEST_MODELS, *models}]
        for queue in (topology.jobs_queue, topology.dead_letter_queue, *lanes):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
        for exchange in (topology.cancel_exchange, topology.dead_letter_exchange,
                         topology.jobs_exchange, topology.reply_exchange):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def namespace(services: None) -> AsyncIterator[str]:
    name = new_namespace()
    yield name
    await cleanup_namespace(name)


@pytest.fixture
def settings(namespace: str) -> Settings:
    return Settings(namespace=namespace, amqp_url=AMQP_URL, redis_url=REDIS_URL,
                    lane_expires=TEST_LANE_EXPIRES)


@pytest.fixture(scope="session")
def session_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")
