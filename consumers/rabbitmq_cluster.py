"""A robust AMQP connection to a RabbitMQ cluster given as one URL per node.

The connection is to one node at a time, chosen at random at first so that processes spread
over the cluster. When that node goes (stopped, crashed, unreachable), every attempt to
reconnect goes to the next node after the one that failed, so the process reaches a live
node within one round of attempts; aio-pika then restores its channels there: exchanges,
queues (the exclusive reply and cancel queues are declared anew on that node), bindings,
QoS and consumers. What was in flight on the lost connection is lost with it: unacknowledged
deliveries go back to their queue, and an api fails the requests that waited for replies.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from aio_pika import RobustConnection
from aio_pika.abc import AbstractRobustConnection
from aio_pika.connection import make_url
from tenacity import RetryCallState
from yarl import URL

log = logging.getLogger(__name__)


class ClusterConnection(RobustConnection):
    """aio-pika's robust connection over the nodes of one cluster, taken in turn."""

    def __init__(self, urls: Sequence[URL], *, first: int = 0, **kwargs: Any) -> None:
        if not urls:
            raise ValueError("no broker URL")
        self._nodes = list(urls)
        self._node = first % len(self._nodes)
        super().__init__(self._nodes[self._node], **kwargs)

    @property
    def node(self) -> str:
        """``host:port`` of the node this connection is on, or tries next."""
        return f"{self.url.host}:{self.url.port}"

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        """Called when the connection goes and when an attempt to connect fails: the next
        attempt is to the next node."""
        if len(self._nodes) > 1 and not self.close_called:
            self._node = (self._node + 1) % len(self._nodes)
            self.url = self._nodes[self._node]
        await super()._on_connection_close(closing)


async def connect_cluster(urls: Sequence[str], *, first: int, reconnect_interval: float,
                          heartbeat: int, name: str, connect_timeout: float = 5.0
                          ) -> AbstractRobustConnection:
    """Connect to the node ``first`` of ``urls`` (counted round); raises what the attempt
    raised. Later reconnections take the nodes in turn from there."""
    nodes = [make_url(url, heartbeat=heartbeat, reconnect_interval=reconnect_interval)
             for url in urls]
    connection = ClusterConnection(nodes, first=first, reconnect_interval=reconnect_interval,
                                   client_properties={"connection_name": name})
    await connection.connect(timeout=connect_timeout)
    if len(nodes) > 1:
        log.info("connected to the broker at %s", connection.node)
    connection.reconnect_callbacks.add(_reconnected)
    return connection


def random_node(urls: Sequence[str]) -> int:
    """Where a process starts: processes spread over the cluster's nodes."""
    return random.randrange(len(urls))  # spreads load, secures nothing


def round_of_nodes(nodes: int, wait: Callable[[RetryCallState], float]
                   ) -> Callable[[RetryCallState], float]:
    """A tenacity wait: none until an attempt on every node failed, then ``wait``."""

    def waited(state: RetryCallState) -> float:
        return wait(state) if state.attempt_number % nodes == 0 else 0.0

    return waited


def _reconnected(connection: AbstractRobustConnection | None, /) -> None:
    node = connection.node if isinstance(connection, ClusterConnection) else "?"
    log.warning("reconnected to the broker at %s; channels and consumers restored", node)
