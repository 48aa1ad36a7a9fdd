"""Uvicorn servers that a process runs beside its main work, started in the background."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process that runs it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def quiet_server(app: Any, host: str, port: int, *, log_level: str,
                 grace: float) -> QuietServer:
    return QuietServer(uvicorn.Config(app, host=host, port=port, access_log=False,
                                      log_config=None, log_level=log_level.lower(),
                                      timeout_graceful_shutdown=int(grace)))


def bind_first_free(host: str, first_port: int, span: int) -> socket.socket | None:
    """A listening-ready socket on the first free port of ``first_port`` ..
    ``first_port + span - 1``, or None when every one is taken. Several dispatchers on one host
    thus take the ports in turn instead of failing on the first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in range(first_port, min(first_port + span, 65536)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        sock.set_inheritable(True)
        return sock
    return None


async def serve_in_background(server: QuietServer,
                              sock: socket.socket | None = None) -> asyncio.Task[None]:
    """Start ``server`` (on ``sock`` when given) and return once it listens, or raise if it
    could not start."""
    task = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped during start-up")
        await asyncio.sleep(0.02)
    return task
