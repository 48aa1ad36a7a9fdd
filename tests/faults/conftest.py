"""Fault injection: private Redis and RabbitMQ processes that the suite may stop, hang and
restart; the machine's shared ones are never touched."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import cleanup_namespace
from tests.stack import Stack, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.faults

RABBITMQ_SCRIPTS = ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmqctl")


def missing_needs() -> list[str]:
    """What this machine lacks for the suite: it starts its own RabbitMQ node as the rabbitmq
    user (hence root and runuser) and its own Redis."""
    missing = [] if os.geteuid() == 0 else ["root"]
    try:
        pwd.getpwnam("rabbitmq")
    except KeyError:
        missing.append("the rabbitmq user (from the rabbitmq-server package)")
    missing += [path for path in RABBITMQ_SCRIPTS if not os.access(path, os.X_OK)]
    missing += [name for name in ("runuser", "redis-server") if shutil.which(name) is None]
    return missing


@pytest.fixture(scope="session", autouse=True)
def fault_suite_needs() -> None:
    """Checked once, before the first fault test: skipped locally, a failure under CI."""
    missing = missing_needs()
    if not missing:
        return
    reason = f"the fault suite needs {', '.join(missing)}"
    if ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass
class PrivateRedis:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def hang(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = PrivateRedis(port, proc)
    with redis.Redis(port=port, socket_timeout=0.5) as client:
        wait_until(client.ping, timeout=10, ignoring=(redis.RedisError,),
                   what=f"the private Redis on port {port} to answer")
    yield server
    server.stop()


@pytest.fixture
def make_stack(services: None, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(**env: str) -> Stack:
        stack = Stack(tmp_path / f"stack{len(stacks)}", env_extra=env)
        stack.workdir.mkdir()
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
        asyncio.run(cleanup_namespace(stack.namespace))


def chat(stack: Stack, content: str, *, timeout: float = 30, model: str = "fake",
         **extra: object) -> object:
    import httpx

    return httpx.post(stack.base_url + "/v1/chat/completions", timeout=timeout,
                      json={"model": model, "messages": [{"role": "user", "content": content}],
                            **extra})


FIGURES: list[str] = []


@pytest.fixture
def figures() -> list[str]:
    """Measured figures, printed at the end of the run for the record."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
