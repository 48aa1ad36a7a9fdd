from __future__ import annotations

import httpx
import pytest

from contracts.errors import WorkerConnectError, WorkerError, WorkerStreamError
from contracts.fastchat import GenerateParams
from dispatcher.forwarder import WorkerClient, split_frames
from tests.unit.dispatcher.fakes import ByteStream, frames

PARAMS = GenerateParams(model="m", prompt="p", temperature=0.7, top_p=1.0, top_k=-1,
                        presence_penalty=0, frequency_penalty=0, max_new_tokens=5, echo=False,
                        stop=[])


def test_frames_split_across_reads_are_reassembled() -> None:
    buffer = bytearray()
    assert split_frames(buffer, b'{"text": "a"') == []
    assert split_frames(buffer, b'}\0\0{"text": "ab"}\0{"te') == [b'{"text": "a"}',
                                                                 b'{"text": "ab"}']
    assert bytes(buffer) == b'{"te'


async def _texts(client: WorkerClient) -> list[str]:
    async with client.generate_stream("http://w:1", PARAMS) as stream:
        return [frame.text async for frame in stream]


async def test_stream_yields_frames_whatever_the_chunking() -> None:
    body = frames("a", "ab", "abc")
    pieces = [body[i:i + 3] for i in range(0, len(body), 3)]
    client = WorkerClient(connect_timeout=1, read_timeout=1, transport=httpx.MockTransport(
        lambda _r: httpx.Response(200, stream=ByteStream(pieces))))
    assert await _texts(client) == ["a", "ab", "abc", "abc"]


async def test_stream_sends_exactly_the_gen_params() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, stream=ByteStream([frames("x")]))

    await _texts(WorkerClient(connect_timeout=1, read_timeout=1,
                              transport=httpx.MockTransport(handler)))
    assert seen == [b'{"model":"m","prompt":"p","temperature":0.7,"top_p":1.0,"top_k":-1,'
                    b'"presence_penalty":0.0,"frequency_penalty":0.0,"max_new_tokens":5,'
                    b'"echo":false,"stop":[]}']


async def test_refused_connection_is_retryable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = WorkerClient(connect_timeout=1, read_timeout=1,
                          transport=httpx.MockTransport(refuse))
    with pytest.raises(WorkerConnectError) as caught:
        await _texts(client)
    assert caught.value.retryable


async def test_server_error_before_output_is_retryable_but_4xx_is_not() -> None:
    for status, cls in ((503, WorkerConnectError), (404, WorkerError)):
        client = WorkerClient(connect_timeout=1, read_timeout=1, transport=httpx.MockTransport(
            lambda _r, s=status: httpx.Response(s)))
        with pytest.raises(cls) as caught:
            await _texts(client)
        assert caught.value.retryable is (status == 503)


async def test_broken_stream_after_output_is_not_retryable() -> None:
    client = WorkerClient(connect_timeout=1, read_timeout=1, transport=httpx.MockTransport(
        lambda _r: httpx.Response(200, stream=ByteStream([b'{"text": "a"}\0'],
                                                         fail_after=True))))
    with pytest.raises(WorkerStreamError) as caught:
        await _texts(client)
    assert not caught.value.retryable


async def test_body_ending_inside_a_frame_is_an_error() -> None:
    client = WorkerClient(connect_timeout=1, read_timeout=1, transport=httpx.MockTransport(
        lambda _r: httpx.Response(200, stream=ByteStream([b'{"text": "a"}\0{"text": "ab']))))
    with pytest.raises(WorkerStreamError):
        await _texts(client)
