"""A clock the tests move, and workers that answer the controller's status calls."""

from __future__ import annotations

import httpx

from contracts.fastchat import WorkerStatus


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Workers:
    """The workers the controller can reach, by address; any other address is unreachable.
    ``streams`` holds what a worker's ``/worker_generate_stream`` sends."""

    def __init__(self) -> None:
        self.statuses: dict[str, WorkerStatus] = {}
        self.streams: dict[str, bytes] = {}
        self.generate_bodies: list[bytes] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        address = f"{request.url.scheme}://{request.url.netloc.decode()}"
        if request.url.path == "/worker_get_status" and address in self.statuses:
            return httpx.Response(200, content=self.statuses[address].model_dump_json())
        if request.url.path == "/worker_generate_stream" and address in self.streams:
            self.generate_bodies.append(request.content)
            return httpx.Response(200, content=self.streams[address])
        raise httpx.ConnectError("unreachable", request=request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)
