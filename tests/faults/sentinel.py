"""Redis with Sentinel of the suite's own: a primary, a replica and three sentinels on loopback
ports, that tests may hang and kill."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.stack import free_port
from tests.waiting import wait_until

PRIMARY_NAME = "mqfault"
DOWN_AFTER_MS = 1000  # a primary silent this long is down, for each sentinel


@dataclass
class RedisProcess:
    port: int
    proc: subprocess.Popen[bytes]

    def command(self, *args: str) -> Any:
        """One command's answer, on a connection of its own."""
        with redis.Redis(port=self.port, socket_timeout=1, decode_responses=True) as client:
            return client.execute_command(*args)

    def hang(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.resume()
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class SentinelSetup:
    primary: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess]
    root: Path

    @property
    def addresses(self) -> str:
        """``MQGATE_REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def primary_port(self) -> int | None:
        """The primary's port as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                host_port = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                             PRIMARY_NAME)
                return int(host_port[1])
        return None

    def stop(self) -> None:
        for process in [*self.sentinels, self.replica, self.primary]:
            process.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _redis_server(root: Path, name: str, *args: str) -> RedisProcess:
    binary = shutil.which("redis-server")
    assert binary is not None
    port = free_port()
    workdir = root / name
    workdir.mkdir()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(workdir), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process = RedisProcess(port, proc)
    wait_until(lambda: process.command("PING"), timeout=10, ignoring=(redis.RedisError,),
               what=f"redis {name} to answer")
    return process


def _sentinel(root: Path, name: str, primary_port: int) -> RedisProcess:
    binary = shutil.which("redis-server")
    assert binary is not None
    port = free_port()
    workdir = root / name
    workdir.mkdir()
    config = workdir / "sentinel.conf"  # a sentinel rewrites its configuration file
    config.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                      f"sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} 2\n"
                      f"sentinel down-after-milliseconds {PRIMARY_NAME} {DOWN_AFTER_MS}\n"
                      f"sentinel failover-timeout {PRIMARY_NAME} 10000\n"
                      f"sentinel parallel-syncs {PRIMARY_NAME} 1\n")
    proc = subprocess.Popen([binary, str(config), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process = RedisProcess(port, proc)
    wait_until(lambda: process.command("PING"), timeout=10, ignoring=(redis.RedisError,),
               what=f"sentinel {name} to answer")
    return process


def _ready(setup: SentinelSetup) -> bool:
    """Every sentinel knows the replica and the two other sentinels."""
    for sentinel in setup.sentinels:
        state = sentinel.command("SENTINEL", "MASTER", PRIMARY_NAME)
        fields = state if isinstance(state, dict) else dict(zip(state[::2], state[1::2],
                                                                strict=True))
        if int(fields["num-slaves"]) < 1 or int(fields["num-other-sentinels"]) < 2:
            return False
    return True


@contextlib.contextmanager
def redis_with_sentinels() -> Iterator[SentinelSetup]:
    root = Path(tempfile.mkdtemp(prefix="mqgate-sentinel-"))
    started: list[RedisProcess] = []
    try:
        primary = _redis_server(root, "primary")
        started.append(primary)
        replica = _redis_server(root, "replica", "--replicaof", "127.0.0.1", str(primary.port))
        started.append(replica)
        wait_until(lambda: replica.command("INFO", "replication").get("master_link_status")
                   == "up", timeout=10, what="the replica to follow the primary")
        for i in range(3):
            started.append(_sentinel(root, f"sentinel{i}", primary.port))
        setup = SentinelSetup(primary, replica, started[2:], root)
        wait_until(lambda: _ready(setup), timeout=20, interval=0.2, ignoring=(redis.RedisError,),
                   what="the sentinels to know the replica and each other")
    except BaseException:
        for process in started:
            process.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield setup
    finally:
        setup.stop()
