"""The dispatcher's side port: taken in turn on a shared host, never fatal."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from runtime.servers import bind_first_free


@pytest.fixture
def taken() -> Iterator[int]:
    """A port some other process is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_taken_port_moves_on_to_the_next_free_one(taken: int) -> None:
    sock = bind_first_free("127.0.0.1", taken, 16)
    assert sock is not None
    with sock:
        assert sock.getsockname()[1] > taken


def test_every_port_taken_gives_none_instead_of_failing(taken: int) -> None:
    assert bind_first_free("127.0.0.1", taken, 1) is None
