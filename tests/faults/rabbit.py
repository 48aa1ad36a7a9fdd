"""A RabbitMQ node of the suite's own, on its own port, that tests may stop and start."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.stack import free_port
from tests.waiting import wait_until


@dataclass
class PrivateRabbit:
    name: str
    port: int
    root: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(["runuser", "-u", "rabbitmq", "--", "/usr/lib/rabbitmq/bin/rabbitmqctl",
                        "-n", self.name, *args], env=self.env, check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ctl_output(self, *args: str, timeout: float = 60) -> str:
        """What ``rabbitmqctl`` prints."""
        return subprocess.run(["runuser", "-u", "rabbitmq", "--",
                               "/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.name, *args],
                              env=self.env, check=True, timeout=timeout, capture_output=True,
                              text=True).stdout

    def wait_started(self) -> None:
        def started() -> bool:
            try:
                self.ctl("await_startup", "--timeout", "5", timeout=20)
            except subprocess.SubprocessError:
                if self.proc.poll() is not None:
                    raise
                return False
            return True

        try:
            wait_until(started, timeout=90, interval=1,
                       what=f"the RabbitMQ node {self.name} to start")
        except (AssertionError, subprocess.SubprocessError):
            self.shutdown()
            raise RuntimeError("the private RabbitMQ node did not start") from None

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")

    def shutdown(self) -> None:
        try:
            self.ctl("stop", timeout=60)
        except (subprocess.SubprocessError, OSError):
            self.proc.kill()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def start_private_rabbit(*, erl_args: str = "") -> PrivateRabbit:
    """A node of its own, started; ``erl_args`` go to its Erlang VM."""
    rabbit = spawn_private_rabbit(erl_args=erl_args)
    rabbit.wait_started()
    return rabbit


def spawn_private_rabbit(*, erl_args: str = "") -> PrivateRabbit:
    """A node of its own, starting (``wait_started`` waits for it)."""
    root = Path(tempfile.mkdtemp(prefix="mqgate-rabbit-"))
    port, dist = free_port(), free_port()
    name = f"mqfault{uuid.uuid4().hex[:6]}@localhost"
    (root / "enabled_plugins").write_text("[].\n")
    (root / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{port}\n"
                                        "heartbeat = 10\nloopback_users = none\n")
    subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(root)], check=True)
    os.chmod(root, 0o755)
    env = {**os.environ, "HOME": "/var/lib/rabbitmq", "RABBITMQ_NODENAME": name,
           "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(port),
           "RABBITMQ_DIST_PORT": str(dist), "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
           "RABBITMQ_LOG_BASE": str(root / "log"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
           "RABBITMQ_PID_FILE": str(root / "pid"),
           "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
           "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
               f"-kernel inet_dist_use_interface {{127,0,0,1}} {erl_args}".strip()}
    proc = subprocess.Popen(["runuser", "-u", "rabbitmq", "--",
                             "/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    return PrivateRabbit(name, port, root, env, proc)
