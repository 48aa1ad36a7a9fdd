"""Server-sent events: framing, headers, and the stream body for a job's replies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable

from starlette.responses import StreamingResponse

from api.errors import error_body
from api.gateway import Gateway, ReplyReader
from contracts.errors import MqgateError
from contracts.jobs import Reply, ReplyKind

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
DONE = b"data: [DONE]\n\n"
KEEPALIVE_COMMENT = b": keepalive\n\n"

EventRenderer = Callable[[Reply], Iterable[bytes]]


def event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def error_event(error: MqgateError) -> bytes:
    return event(error_body(error))


async def reply_events(gateway: Gateway, reader: ReplyReader, first: Reply,
                       opening: Iterable[bytes], render: EventRenderer) -> AsyncIterator[bytes]:
    """The whole SSE body; an error after the start becomes one error event, then [DONE].
    Owns ``reader``: closes it at the end, which cancels the job if it has not ended."""
    failure: MqgateError | None = None
    try:
        for chunk in opening:
            yield chunk
        reply: Reply | None = first
        while True:
            if reply is None:
                yield KEEPALIVE_COMMENT
            else:
                for chunk in render(reply):
                    yield chunk
                if reply.kind is ReplyKind.FINAL:
                    break
            reply = await reader.next(keepalive=gateway.settings.keepalive_interval)
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
