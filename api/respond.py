"""The shared tail of every generation route: submit, wait, answer (JSON or SSE)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from api.disconnect import ClientDisconnectedError, unless_disconnected
from api.gateway import Gateway
from api.metrics import TTFT, route_of
from api.sse import EventRenderer, reply_events, sse_response
from contracts.jobs import Job, Reply

CLIENT_CLOSED = 499
# a stream whose job has not started after this many seconds starts with its queue position
POSITION_AFTER = 0.5


class StreamRenderer(Protocol):
    def opening(self) -> list[bytes]: ...

    def chunks(self, reply: Reply) -> list[bytes]: ...


Complete = Callable[[list[Reply]], bytes]


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def timed(request: Request, render: EventRenderer) -> EventRenderer:
    """``render``, observing the time to the first generated text on the way."""
    started: float = getattr(request.state, "started", time.monotonic())
    route = route_of(request.scope)
    waiting = True

    def render_timed(reply: Reply) -> Iterable[bytes]:
        nonlocal waiting
        if waiting and (reply.chunks or any(choice.text for choice in reply.choices)):
            waiting = False
            TTFT.labels(route=route).observe(time.monotonic() - started)
        return render(reply)

    return render_timed


async def respond(request: Request, gateway: Gateway, job: Job, complete: Complete,
                  stream: StreamRenderer | None = None) -> Response:
    """Submit ``job`` and answer: JSON built by ``complete`` from the replies, or, for a
    streamed job, SSE rendered by ``stream``. A client that leaves cancels the job."""
    request.state.model = job.model
    reader = await gateway.submit(job)
    handed_over = False
    try:
        if job.stream and stream is not None:
            first = await unless_disconnected(request, reader.first_within(POSITION_AFTER))
            position = None
            if first is None and not gateway.dispatchers(job.model).absent:
                position = gateway.position(job)  # it waits its turn: say where it stands
            elif first is None:  # no dispatcher yet: the answer may still be a 503
                first = await unless_disconnected(request, reader.first())
            handed_over = True  # the stream's body closes the reader
            return sse_response(reply_events(gateway, reader, first, stream.opening(),
                                             timed(request, stream.chunks), position))
        replies = await unless_disconnected(request, reader.final())
        return json_response(complete(replies))
    except ClientDisconnectedError:
        reader.close(client_gone=True)
        return Response(status_code=CLIENT_CLOSED)
    finally:
        if not handed_over:
            reader.close()
