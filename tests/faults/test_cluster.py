"""A three-node RabbitMQ cluster with quorum queues, under steady load: the node leading the
jobs' queue is stopped and brought back, then the node the api is connected to. Every
non-streamed request gets exactly one answer; a stream ends with an error event only when it
was in flight on a connection to a node that went away."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import pytest

from contracts.settings import Settings
from tests.faults.cluster import RabbitCluster, rabbit_cluster
from tests.faults.openload import OpenLoad, Outcome
from tests.faults.rabbit import PrivateRabbit
from tests.stack import Stack
from tests.waiting import wait_until

pytestmark = pytest.mark.faults

RATE = 55.0  # requests a second, every third one streamed
SECONDS = 64.0  # of load, across both stops


@pytest.fixture
def cluster(services: None) -> Iterator[RabbitCluster]:
    with rabbit_cluster(3) as nodes:
        yield nodes


@dataclass
class Stop:
    """A node taken out under load: when the stop was asked, when the node was down, when it
    was back."""

    what: str
    node: PrivateRabbit
    asked: float = 0.0
    down: float = 0.0
    back: float = 0.0
    first_success: float | None = None

    def hit(self, outcome: Outcome) -> bool:
        """Whether ``outcome``'s request was in flight when the node went."""
        return outcome.started < self.down and outcome.ended > self.asked


def jobs_queue(cluster: RabbitCluster, namespace: str) -> str:
    """The quorum queue that the stack's jobs go to (not the dead-letter queue)."""
    names = [str(row["name"]) for row in cluster.query("list_queues", "name", "type")
             if str(row["name"]).startswith(namespace + ".") and row["type"] == "quorum"
             and not str(row["name"]).endswith(".dead")]
    assert len(names) == 1, names
    return names[0]


def api_node(cluster: RabbitCluster) -> PrivateRabbit:
    """The node that the api's connection is on, as the cluster lists its connections."""
    for row in cluster.query("list_connections", "port", "client_properties"):
        listed = cast(list[list[object]], row["client_properties"])  # [name, type, value]
        properties = {str(p[0]): p[2] for p in listed}
        if properties.get("connection_name") == "mqgate-RabbitJobQueue":
            return cluster.node_at(int(str(row["port"])))
    raise LookupError("the api has no connection")


def take_out(cluster: RabbitCluster, load: OpenLoad, stop: Stop) -> None:
    """Stop ``stop.node`` until the load is served again and ten seconds more, then bring it
    back and wait until the cluster runs it again."""
    stop.asked = time.monotonic()
    stop.node.stop_app()
    stop.down = time.monotonic()
    stop.first_success = wait_until(lambda: load.first_success_after(stop.asked), timeout=30,
                                    what=f"a success after the {stop.what} stopped")
    wait_until(lambda: time.monotonic() > stop.down + 10, timeout=15, interval=0.5,
               what="ten seconds of load without the node")
    stop.node.start_app()
    wait_until(lambda: stop.node.name in cluster.running(), timeout=60, interval=0.5,
               what=f"the cluster to run {stop.node.name} again")
    stop.back = time.monotonic()


@pytest.mark.timeout(300)  # the cluster starts in about 20 s, the load runs for a minute
def test_cluster_node_losses_under_load(cluster: RabbitCluster,
                                        make_stack: Callable[..., Stack],
                                        figures: list[str]) -> None:
    stack = make_stack(MQGATE_AMQP_URL=cluster.amqp_url, MQGATE_QUEUE_TYPE="quorum",
                       MQGATE_REQUEST_TIMEOUT="30", MQGATE_STREAM_IDLE_TIMEOUT="10",
                       MQGATE_PUBLISH_TIMEOUT="2", MQGATE_CONCURRENCY="32",
                       MQGATE_WORKER_CONCURRENCY="64")  # the fake worker takes any number
    stack.start_serving_fake("w", dispatchers=2)
    queue = jobs_queue(cluster, stack.namespace)
    load = OpenLoad(stack.base_url, rate=RATE, seconds=SECONDS).start()
    stops = []
    try:
        wait_until(lambda: load.successes_after(load.started_at) >= 100, timeout=30,
                   what="the load to be served")
        stops.append(Stop("leader of the jobs' queue", cluster.leader_of(queue)))
        take_out(cluster, load, stops[-1])
        stops.append(Stop("api's node", api_node(cluster)))
        take_out(cluster, load, stops[-1])
    finally:
        load.join()
    outcomes = load.snapshot()
    elapsed = max(o.started for o in outcomes) - load.started_at
    plain = [o for o in outcomes if not o.stream]
    streams = [o for o in outcomes if o.stream]
    unanswered = [o for o in plain if o.answers != 1 or o.end in ("no_answer", "wrong_text")]
    errored = [o for o in streams if o.end == "error_event"]
    stray = [o for o in errored if not any(stop.hit(o) for stop in stops)]
    figures.append(
        f"rabbitmq cluster: {len(outcomes)} requests in {elapsed:.0f}s "
        f"({len(outcomes) / elapsed:.0f}/s; {len(plain)} plain, {len(streams)} streamed); "
        f"outcomes {dict(load.counts())}; plain requests without exactly one answer: "
        f"{len(unanswered)}; streams ended by an error event: {len(errored)} "
        f"({len(errored) - len(stray)} in flight when a node went)")
    for stop in stops:
        assert stop.first_success is not None
        failed = [o.started - stop.asked for o in outcomes
                  if o.end != "ok" and stop.asked - 1 <= o.started <= stop.back]
        figures.append(f"rabbitmq cluster: stopped the {stop.what} ({stop.node.name}): the "
                       f"first request sent after the stop began succeeded "
                       f"{stop.first_success - stop.asked:.2f}s after it began (stop_app took "
                       f"{stop.down - stop.asked:.1f}s); {len(failed)} requests sent from 1 s "
                       f"before it until the node was back failed"
                       f"{f', sent {min(failed):+.2f}s to {max(failed):+.2f}s' if failed else ''}"
                       f"; the node was back {stop.back - stop.down:.0f}s later")
    assert len(outcomes) / elapsed >= 50
    assert elapsed >= 60
    assert unanswered == []
    assert stray == []
    assert all(o.end in ("ok", "http_error", "error_event") for o in outcomes)
    # what the failure table gives a request that a node's loss reaches: 503 (the broker
    # connection went, or the api was reconnecting), 502 (its replies were lost with the
    # connection) or 504 (nothing came back before its deadline)
    assert {o.status for o in outcomes if o.end == "http_error"} <= {502, 503, 504}
    assert load.successes_after(stops[-1].back) > 0
    queues = {row["name"]: row for row in cluster.query("list_queues", "name", "type",
                                                          "consumers")}
    assert queues[queue]["consumers"] == 2  # both dispatchers consume again, wherever they are
    # replicated too: a classic one would be missing while its node is down
    assert queues[Settings(namespace=stack.namespace).topology.dead_letter_queue]["type"] == (
        "quorum")
