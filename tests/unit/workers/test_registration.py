"""The worker keeps itself registered with the controller, as FastChat's workers do."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import orjson

from contracts.fastchat import HeartBeatRequest, RegisterWorkerRequest
from workers.registration import Registration

ADDRESS = "http://worker:21002"
Call = tuple[str, RegisterWorkerRequest | HeartBeatRequest]


class Controller:
    """Answers with ``answers`` in turn, and tells of every call on ``calls``; once the
    answers run out it never answers again."""

    def __init__(self, answers: list[httpx.Response]) -> None:
        self.calls: asyncio.Queue[Call] = asyncio.Queue()
        self._answers: Iterator[httpx.Response] = iter(answers)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        path = request.url.path
        if path == "/register_worker":
            self.calls.put_nowait((path, RegisterWorkerRequest.model_validate(body)))
        else:
            self.calls.put_nowait((path, HeartBeatRequest.model_validate(body)))
        answer = next(self._answers, None)
        if answer is None:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")
        return answer


def registration(controller: Controller, queue: list[int]) -> Registration:
    return Registration("http://controller/", address=ADDRESS, model_names=["m", "e"],
                        queue_length=lambda: queue[0], interval=0, retry=0,
                        transport=httpx.MockTransport(controller))


async def test_registers_then_beats_and_registers_again_when_forgotten() -> None:
    registered = httpx.Response(200, json=None)
    controller = Controller([registered, httpx.Response(200, json={"exist": True}),
                             httpx.Response(200, json={"exist": False}), registered])
    queue = [2]
    async with registration(controller, queue):
        path, first = await controller.calls.get()
        assert path == "/register_worker"
        assert isinstance(first, RegisterWorkerRequest)
        assert first.worker_name == ADDRESS and first.check_heart_beat
        assert first.worker_status is not None
        assert (first.worker_status.model_names, first.worker_status.queue_length) == (
            ["m", "e"], 2)
        queue[0] = 5
        assert await controller.calls.get() == (
            "/receive_heart_beat", HeartBeatRequest(worker_name=ADDRESS, queue_length=5))
        assert (await controller.calls.get())[0] == "/receive_heart_beat"  # exist: false
        assert (await controller.calls.get())[0] == "/register_worker"


async def test_a_controller_that_fails_is_tried_again() -> None:
    controller = Controller([httpx.Response(500), httpx.Response(200, json=None),
                             httpx.Response(200, text="not json")])
    async with registration(controller, [0]):
        assert (await controller.calls.get())[0] == "/register_worker"  # 500
        assert (await controller.calls.get())[0] == "/register_worker"
        assert (await controller.calls.get())[0] == "/receive_heart_beat"  # not json
        assert (await controller.calls.get())[0] == "/register_worker"
