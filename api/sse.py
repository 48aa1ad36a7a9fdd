"""Server-sent events: framing, headers, and the stream body for a job's replies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from starlette.responses import StreamingResponse

from api.errors import error_body
from api.gateway import Gateway, ReplyReader
from consumers.lanes import QueuePosition
from contracts.errors import MqgateError
from contracts.jobs import Reply, ReplyKind

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
DONE = b"data: [DONE]\n\n"
KEEPALIVE_COMMENT = b": keepalive\n\n"
POSITION_INTERVAL = 1.0  # seconds between two queue positions of a waiting stream

EventRenderer = Callable[[Reply], Iterable[bytes]]


def event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def queued_comment(place: int) -> bytes:
    return b": queued position=%d\n\n" % place


def error_event(error: MqgateError) -> bytes:
    return event(error_body(error))


@dataclass
class _Pauses:
    """What a stream says while no reply comes: its estimated place in its lane while the job
    waits there, else a keepalive now and then."""

    reader: ReplyReader
    position: QueuePosition | None
    keepalive: float

    @property
    def waiting(self) -> bool:
        return self.position is not None and not self.reader.output_seen

    def interval(self) -> float:
        return POSITION_INTERVAL if self.waiting else self.keepalive

    async def comment(self) -> bytes:
        if not self.waiting or self.position is None:
            return KEEPALIVE_COMMENT
        place = await self.position.estimate()
        if place is None:
            self.position = None  # taken: the first tokens are on their way
            return KEEPALIVE_COMMENT
        return queued_comment(place)


async def reply_events(gateway: Gateway, reader: ReplyReader, first: Reply | None,
                       opening: Iterable[bytes], render: EventRenderer,
                       position: QueuePosition | None = None) -> AsyncIterator[bytes]:
    """The whole SSE body; an error after the start becomes one error event, then [DONE].
    While the job waits in its lane (``first`` is None), comment lines give its estimated
    place (``: queued position=N``), which OpenAI clients ignore. Owns ``reader``: closes it
    at the end, which cancels the job if it has not ended."""
    failure: MqgateError | None = None
    pauses = _Pauses(reader, position, gateway.settings.keepalive_interval)
    try:
        for chunk in opening:
            yield chunk
        reply: Reply | None = first
        while True:
            if reply is None:
                yield await pauses.comment()
            else:
                for chunk in render(reply):
                    yield chunk
                if reply.kind is ReplyKind.FINAL:
                    break
            reply = await reader.next(keepalive=pauses.interval())
    except MqgateError as exc:
        failure = exc
    except BaseException:  # the client went away (the response task is cancelled)
        reader.close(client_gone=True)
        raise
    finally:
        reader.close()
    if failure is not None:
        yield error_event(failure)
    yield DONE


def sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)
