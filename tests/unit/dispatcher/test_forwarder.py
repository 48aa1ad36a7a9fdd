from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from contracts.errors import WorkerConnectError, WorkerError, WorkerStreamError
from contracts.fastchat import GenerateParams
from dispatcher.forwarder import WorkerClient, split_frames
from tests.unit.dispatcher.fakes import Scripted, ScriptedWorkers, frames, refused_address

PARAMS = GenerateParams(model="m", prompt="p", temperature=0.7, top_p=1.0, top_k=-1,
                        presence_penalty=0, frequency_penalty=0, max_new_tokens=5, echo=False,
                        stop=[])


def test_frames_split_across_reads_are_reassembled() -> None:
    buffer = bytearray()
    assert split_frames(buffer, b'{"text": "a"') == []
    assert split_frames(buffer, b'}\0\0{"text": "ab"}\0{"te') == [b'{"text": "a"}',
                                                                   b'{"text": "ab"}']
    assert bytes(buffer) == b'{"te'


@pytest.fixture
async def worker() -> AsyncIterator[tuple[ScriptedWorkers, str]]:
    scripted = ScriptedWorkers()
    server = TestServer(scripted.app(), host="127.0.0.1")
    await server.start_server()
    yield scripted, f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest.fixture
async def client() -> AsyncIterator[WorkerClient]:
    c = WorkerClient(connect_timeout=1, read_timeout=2)
    yield c
    await c.aclose()


async def _texts(client: WorkerClient, address: str) -> list[str]:
    async with client.generate_stream(address, PARAMS) as stream:
        return [frame.text async for frame in stream]


async def test_stream_yields_frames_whatever_the_chunking(
        client: WorkerClient, worker: tuple[ScriptedWorkers, str]) -> None:
    scripted, address = worker
    body = frames("a", "ab", "abc")
    scripted.stream_for = lambda _a, _b: Scripted([body[i:i + 3]
                                                   for i in range(0, len(body), 3)])
    assert await _texts(client, address) == ["a", "ab", "abc", "abc"]


async def test_latest_only_skips_frames_overtaken_within_a_read(
        client: WorkerClient, worker: tuple[ScriptedWorkers, str]) -> None:
    scripted, address = worker
    first, rest = frames("a", "ab", "abc").split(b"\0", 1)
    scripted.stream_for = lambda _a, _b: Scripted([first + b"\0", rest], delay=0.05)
    async with client.generate_stream(address, PARAMS) as stream:
        seen = [(f.text, f.finish_reason) async for f in stream.frames(latest_only=True)]
    assert seen == [("a", None), ("abc", "stop")]


async def test_stream_sends_exactly_the_gen_params(
        client: WorkerClient, worker: tuple[ScriptedWorkers, str]) -> None:
    scripted, address = worker
    await _texts(client, address)
    assert scripted.bodies == [{"model": "m", "prompt": "p", "temperature": 0.7, "top_p": 1.0,
                                "top_k": -1, "presence_penalty": 0.0,
                                "frequency_penalty": 0.0, "max_new_tokens": 5, "echo": False,
                                "stop": []}]


async def test_connections_are_reused(client: WorkerClient,
                                      worker: tuple[ScriptedWorkers, str]) -> None:
    _scripted, address = worker
    for _ in range(5):
        async with client.generate_stream(address, PARAMS) as stream:
            async for frame in stream:
                if frame.finish_reason:
                    break
            await stream.drain()
    connector = client.session.connector
    assert connector is not None
    assert sum(len(v) for v in connector._conns.values()) == 1  # one kept-alive connection


async def test_refused_connection_is_retryable(client: WorkerClient) -> None:
    with pytest.raises(WorkerConnectError) as caught:
        await _texts(client, refused_address())
    assert caught.value.retryable


async def test_server_error_before_output_is_retryable_but_4xx_is_not(
        client: WorkerClient, worker: tuple[ScriptedWorkers, str]) -> None:
    scripted, address = worker
    for status, cls in ((503, WorkerConnectError), (404, WorkerError)):
        scripted.stream_for = lambda _a, _b, s=status: Scripted(status=s)  # type: ignore[misc]
        with pytest.raises(cls) as caught:
            await _texts(client, address)
        assert caught.value.retryable is (status == 503)


async def test_broken_stream_after_output_is_not_retryable(
        client: WorkerClient, worker: tuple[ScriptedWorkers, str]) -> None:
    scripted, address = worker
    scripted.stream_for = lambda _a, _b: Scripted([b'{"text": "a"}\0'], cut=True)
    with pytest.raises(WorkerStreamError) as caught:
        await _texts(client, address)
    assert not caught.value.retryable


async def test_body_ending_inside_a_frame_is_an_error(
        client: WorkerClient, worker: tuple[ScriptedWorkers, str]) -> None:
    scripted, address = worker
    scripted.stream_for = lambda _a, _b: Scripted([b'{"text": "a"}\0{"text": "ab'])
    with pytest.raises(WorkerStreamError):
        await _texts(client, address)


async def test_redirects_are_not_followed(client: WorkerClient,
                                          worker: tuple[ScriptedWorkers, str]) -> None:
    scripted, address = worker
    scripted.stream_for = lambda _a, _b: Scripted(status=307, headers={
        "Location": address + "/elsewhere"})
    with pytest.raises(WorkerError):
        await _texts(client, address)
    assert scripted.calls[f"{address}/elsewhere"] == 0
