"""Starting real mqgate processes (and fake workers) for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from contracts.settings import Settings
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_namespace() -> str:
    return f"mqtest-{uuid.uuid4().hex[:10]}"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""  # its HTTP side port, where it has one

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Worker:
    url: str
    proc: Proc

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(self.url + "/_stats", timeout=5).json()
        return data

    def wait_generating(self, timeout: float = 10.0) -> None:
        """Until a generation is running on this worker."""
        wait_until(lambda: self.stats()["active"] != 0, timeout=timeout, interval=0.02,
                   what=f"a generation to start on {self.url}")


@dataclass
class Stack:
    """controller + fake workers + dispatchers + api, all in their own processes."""

    workdir: Path
    namespace: str = field(default_factory=new_namespace)
    env_extra: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    workers: dict[str, Worker] = field(default_factory=dict)
    dispatchers: list[Proc] = field(default_factory=list)
    api_port: int = 0
    controller_port: int = 0
    api_key: str | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "MQGATE_NAMESPACE": self.namespace,
            "MQGATE_CONTROLLER_URL": self.controller_url,
            "MQGATE_CACHE_TTL": "2",
            "MQGATE_LANE_EXPIRES": "60",
            "MQGATE_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env_extra)
        return env

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller_port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as handle:
            popen = subprocess.Popen(args, cwd=ROOT, env={**self.env, **(env or {})},
                                     stdout=handle,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def _mqgate(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        return self._spawn(name, [sys.executable, "-m", "mqgate_cli", *args], env)

    def start_controller(self) -> None:
        self.controller_port = free_port()
        self._mqgate("controller", "controller", "--port", str(self.controller_port))
        self._wait_http(self.controller_url + "/test_connection", "controller", method="GET")

    def start_worker(self, name: str, models: list[str], *extra: str,
                     port: int | None = None) -> Worker:
        """A fake worker; ``port`` to start it where an earlier one ran."""
        port = port or free_port()
        args = [sys.executable, "-m", "tests.fakeworker", "--port", str(port),
                "--controller", self.controller_url, *extra]
        for model in models:
            args += ["--model", model]
        proc = self._spawn(f"worker-{name}", args)
        worker = Worker(f"http://127.0.0.1:{port}", proc)
        self.workers[name] = worker
        self._wait_http(worker.url + "/_stats", proc.name, method="GET")
        return worker

    def start_dispatcher(self, *extra: str, metrics_port: int | None = None) -> Proc:
        port = metrics_port or free_port()
        proc = self._mqgate(f"dispatcher-{len(self.dispatchers)}", "dispatcher", *extra,
                            env={"MQGATE_METRICS_PORT": str(port)})
        proc.url = f"http://127.0.0.1:{port}"
        self.dispatchers.append(proc)
        return proc

    def start_api(self) -> None:
        self.api_port = free_port()
        self._mqgate("api", "api", "--port", str(self.api_port))
        self._wait_http(self.base_url + "/healthz", "api", method="GET")

    def start_serving_fake(self, *workers: str, dispatchers: int = 1) -> Stack:
        """Controller, test workers serving model "fake", dispatchers and the api, warmed up."""
        self.start_controller()
        for name in workers:
            self.start_worker(name, ["fake"])
        self.wait_models(["fake"])
        for _ in range(dispatchers):
            self.start_dispatcher()
        self.start_api()
        self.wait_serving("fake")
        return self

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def wait_models(self, models: list[str], timeout: float = 20.0) -> None:
        seen: list[str] = []

        def registered() -> bool:
            nonlocal seen
            seen = httpx.post(self.controller_url + "/list_models", timeout=2).json()["models"]
            return all(m in seen for m in models)

        wait_until(registered, timeout=timeout, interval=0.2, ignoring=(httpx.HTTPError,),
                   what=f"models {models} to be registered",
                   details=lambda: f"(saw {seen})\n{self.logs()}")

    def wait_serving(self, model: str, timeout: float = 30.0) -> None:
        """Until a chat request for ``model`` goes through every layer."""
        last = ""

        def served() -> bool:
            nonlocal last
            r = httpx.post(self.base_url + "/v1/chat/completions", headers=self.headers(),
                           json={"model": model, "max_tokens": 1,
                                 "messages": [{"role": "user", "content": "warm up"}]},
                           timeout=5)
            last = r.text
            return r.status_code == 200

        wait_until(served, timeout=timeout, interval=0.3, ignoring=(httpx.HTTPError,),
                   what=f"the stack to serve {model}",
                   details=lambda: f"(last answer: {last})\n{self.logs()}")

    def _wait_http(self, url: str, name: str, *, method: str = "GET",
                   timeout: float = 20.0) -> None:
        def answers() -> bool:
            httpx.request(method, url, timeout=1)
            return True

        wait_until(answers, timeout=timeout, interval=0.1, ignoring=(httpx.HTTPError,),
                   what=f"{name} to answer at {url}", details=self.logs)

    @property
    def amqp_url(self) -> str:
        """The broker this stack's processes use (the first node of a cluster)."""
        urls = self.env.get("MQGATE_AMQP_URL") or str(Settings.model_fields["amqp_url"].default)
        return urls.split(",")[0].strip()

    def queued_jobs(self, model: str = "fake") -> int:
        """Jobs waiting in ``model``'s lane, as the broker says now (asked on a connection
        of its own: a robust channel answers a repeated passive declare from memory)."""
        queue = Settings(namespace=self.namespace).topology.lane(model)

        async def ask() -> int:
            connection = await aio_pika.connect(self.amqp_url, timeout=5)
            try:
                channel = await connection.channel()
                declared = await channel.declare_queue(queue, passive=True)
                return int(declared.declaration_result.message_count or 0)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return 0  # no job has made the lane yet
            finally:
                await connection.close()

        return asyncio.run(ask())

    def wait_queued(self, jobs: int, model: str = "fake", timeout: float = 20.0) -> None:
        """Until ``jobs`` jobs (or more) wait in ``model``'s lane."""
        wait_until(lambda: self.queued_jobs(model) >= jobs, timeout=timeout,
                   what=f"{jobs} jobs to wait in the lane of {model}",
                   details=self.logs)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.procs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextlib.contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    try:
        yield stack
    finally:
        stack.stop()
