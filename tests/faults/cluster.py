"""A RabbitMQ cluster of the suite's own: private nodes on their own ports, joined with
rabbitmqctl, that tests may stop and start one at a time."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from tests.faults.rabbit import PrivateRabbit, spawn_private_rabbit

# one scheduler per node, and no busy waiting: three Erlang VMs share the machine's cores with
# the stack and its load
QUIET_ERLANG = "+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none"


@dataclass
class RabbitCluster:
    nodes: list[PrivateRabbit]

    @property
    def amqp_url(self) -> str:
        """``MQGATE_AMQP_URL`` for the cluster: every node's URL, by commas."""
        return ",".join(node.url for node in self.nodes)

    def node_at(self, port: int) -> PrivateRabbit:
        return next(node for node in self.nodes if node.port == port)

    def node_named(self, name: str) -> PrivateRabbit:
        return next(node for node in self.nodes if node.name == name)

    def query(self, *args: str, through: PrivateRabbit | None = None) -> list[dict[str, object]]:
        """A rabbitmqctl listing (``list_queues name leader``, say) as JSON rows, asked of
        ``through`` or the first running node."""
        candidates = [through] if through else self.nodes
        for node in candidates:
            with contextlib.suppress(subprocess.SubprocessError):
                out = node.ctl_output(*args, "--formatter", "json")
                rows: list[dict[str, object]] = json.loads(out)
                return rows
        raise RuntimeError(f"no node answered {' '.join(args)}")

    def leader_of(self, queue: str) -> PrivateRabbit:
        """The node leading the quorum queue ``queue``."""
        for row in self.query("list_queues", "name", "leader"):
            if row["name"] == queue:
                return self.node_named(str(row["leader"]))
        raise LookupError(f"no queue {queue}")

    def running(self) -> set[str]:
        """The nodes that the cluster reports running."""
        status = json.loads(self.nodes_status())
        return set(status.get("running_nodes", []))

    def nodes_status(self) -> str:
        for node in self.nodes:
            with contextlib.suppress(subprocess.SubprocessError):
                return node.ctl_output("cluster_status", "--formatter", "json")
        raise RuntimeError("no node answered cluster_status")

    def shutdown(self) -> None:
        for node in self.nodes:
            node.shutdown()


def start_rabbit_cluster(size: int = 3) -> RabbitCluster:
    """``size`` nodes, started side by side, the others joined to the first."""
    nodes: list[PrivateRabbit] = []
    try:
        nodes = [spawn_private_rabbit(erl_args=QUIET_ERLANG) for _ in range(size)]
        for node in nodes:
            node.wait_started()
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", nodes[0].name)
            node.ctl("start_app")
        cluster = RabbitCluster(nodes)
        expected = {node.name for node in nodes}
        if cluster.running() != expected:
            raise RuntimeError(f"the cluster runs {cluster.running()}, not {expected}")
    except BaseException:
        for node in nodes:
            node.shutdown()
        raise
    return cluster


@contextlib.contextmanager
def rabbit_cluster(size: int = 3) -> Iterator[RabbitCluster]:
    cluster = start_rabbit_cluster(size)
    try:
        yield cluster
    finally:
        cluster.shutdown()
