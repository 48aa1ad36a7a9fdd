"""Reading an upstream's events and errors, whatever shape they come in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from contracts.errors import (
    ErrorDetail,
    UpstreamRejectedError,
    WorkerConnectError,
    WorkerStreamError,
)
from contracts.upstream import UpstreamEntry
from dispatcher.upstream_client import UpstreamClient, UpstreamStream, error_detail


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"error": {"message": "bad", "type": "BadRequestError", "param": null, "code": 400}}',
     ErrorDetail(message="bad", type="BadRequestError", code="400")),
    (b'{"object": "error", "message": "too long", "type": "BadRequestError", "param": null,'
     b' "code": 400}', ErrorDetail(message="too long", type="BadRequestError", code="400")),
    (b'{"error": "Input validation error", "error_type": "validation"}',
     ErrorDetail(message="Input validation error", type="validation")),
    (b'{"detail": [{"loc": ["body", "x"], "msg": "field required"}]}',
     ErrorDetail(message='[{"loc":["body","x"],"msg":"field required"}]',
                 type="invalid_request_error")),
    (b"Not Found", ErrorDetail(message="Not Found", type="invalid_request_error")),
])
def test_error_bodies_become_openai_errors(raw: bytes, expected: ErrorDetail) -> None:
    assert error_detail(raw, 400) == expected


@pytest.fixture
async def sse_server() -> AsyncIterator[str]:
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        body = (b": a comment\r\n\r\ndata: {\"a\": 1}\r\n\r\nevent: x\ndata: {\"b\":\n"
                b"data: 2}\n\ndata:{\"c\": 3}\n\n")
        for i in range(0, len(body), 7):  # split anywhere
            await response.write(body[i:i + 7])
        if request.query.get("cut"):
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(b"data: [DONE]\n\ndata: {\"after\": 1}\n\n")
        await response.write_eof()
        return response

    async def refused(_request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "no", "type": "x", "code": None}},
                                 status=503)

    async def refused_in_pieces(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=400, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        body = b'{"error": {"message": "too long", "type": "BadRequestError", "code": 400}}'
        for i in range(0, len(body), 5):
            await response.write(body[i:i + 5])
            await asyncio.sleep(0.001)  # each piece its own read
        await response.write_eof()
        return response

    async def moved(_request: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": "https://elsewhere/v1/events"},
                            text="Moved Permanently")

    app = web.Application()
    app.router.add_post("/v1/events", events)
    app.router.add_post("/v1/refused", refused)
    app.router.add_post("/v1/moved", moved)
    app.router.add_post("/v1/refused_in_pieces", refused_in_pieces)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/v1"
    await server.close()


async def drain(stream: UpstreamStream) -> None:
    async for _ in stream.events():
        pass


async def test_events_are_read_whatever_the_line_ends(sse_server: str) -> None:
    client = UpstreamClient(connect_timeout=1, read_timeout=5)
    entry = UpstreamEntry(id="e", model_name="m", api_base=sse_server, model="m")
    try:
        async with client.stream(entry, None, "/events", {}) as stream:
            got = [event async for event in stream.events()]
        assert got == [b'{"a": 1}', b'{"b":\n2}', b'{"c": 3}']
        assert stream.done
        with pytest.raises(WorkerConnectError, match="answered 503: no"):
            async with client.stream(entry, None, "/refused", {}):
                pass
        # an error body in pieces is read whole
        with pytest.raises(UpstreamRejectedError, match="too long") as rejected:
            async with client.stream(entry, None, "/refused_in_pieces", {}):
                pass
        assert rejected.value.status_code == 400
        assert rejected.value.detail().type == "BadRequestError"
        # a redirect is not followed, nor passed to the client as its status: another entry
        with pytest.raises(WorkerConnectError, match="answered 301: Moved Permanently"):
            async with client.stream(entry, None, "/moved", {}):
                pass
        async with client.stream(entry, None, "/events?cut=1", {}) as stream:
            with pytest.raises(WorkerStreamError):
                await drain(stream)
    finally:
        await client.aclose()
