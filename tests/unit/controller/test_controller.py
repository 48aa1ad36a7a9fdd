"""The controller object: FastChat's registry, liveness and dispatch, over the in-memory store."""

from __future__ import annotations

import pytest

from contracts.fastchat import (
    HeartBeatRequest,
    RegisterWorkerRequest,
    WorkerAddressRequest,
    WorkerRegistered,
    WorkerStatus,
)
from contracts.settings import Settings
from controller.registry import MemoryHashStore
from controller.service import Controller, NotStartedError
from tests.unit.controller.conftest import SETTINGS
from tests.unit.controller.fakes import Clock, Workers

W1, W2, W3 = "http://w1:21002", "http://w2:21002", "http://w3:21002"


async def register(controller: Controller, name: str, models: list[str], *, queue: int = 0,
                   check_heart_beat: bool = True, multimodal: bool = False) -> None:
    await controller.register(RegisterWorkerRequest(
        worker_name=name, check_heart_beat=check_heart_beat, multimodal=multimodal,
        worker_status=WorkerStatus(model_names=models, queue_length=queue)))


async def beat(controller: Controller, name: str, queue: int = 0) -> bool:
    answer = await controller.heart_beat(HeartBeatRequest(worker_name=name, queue_length=queue))
    return answer.exist


async def address(controller: Controller, model: str) -> str:
    return (await controller.worker_address(WorkerAddressRequest(model=model))).address


async def addresses(controller: Controller, model: str) -> dict[str, str]:
    answer = await controller.worker_addresses(WorkerAddressRequest(model=model))
    assert answer.addresses == list(answer.registrations)
    return answer.registrations


async def test_registered_workers_make_the_model_lists(controller: Controller) -> None:
    await register(controller, W1, ["b", "a"])
    await register(controller, W2, ["vision"], multimodal=True)
    assert (await controller.models()).models == ["a", "b", "vision"]
    assert (await controller.models(multimodal=False)).models == ["a", "b"]
    assert (await controller.models(multimodal=True)).models == ["vision"]
    status = await controller.status()
    assert (status.model_names, status.speed, status.queue_length) == (["a", "b", "vision"],
                                                                       2, 0)


async def test_each_registration_is_announced_with_its_id(
        controller: Controller, notices: list[WorkerRegistered]) -> None:
    await register(controller, W1, ["old"])
    await register(controller, W1, ["new"])
    first, second = notices
    assert first.registration != second.registration
    assert second.model_names == ["new", "old"]  # what it served before, and serves now
    assert await addresses(controller, "new") == {W1: second.registration}


async def test_a_worker_that_sends_no_status_is_asked_for_it(
        controller: Controller, workers: Workers) -> None:
    workers.statuses[W1] = WorkerStatus(model_names=["polled"])
    await controller.register(RegisterWorkerRequest(worker_name=W1, check_heart_beat=False))
    await controller.register(RegisterWorkerRequest(worker_name=W2))  # does not answer
    assert (await controller.models()).models == ["polled"]


async def test_heart_beats_tell_unknown_workers_to_register(controller: Controller) -> None:
    assert not await beat(controller, W1)
    await register(controller, W1, ["m"])
    assert await beat(controller, W1, queue=3)
    assert (await controller.status()).queue_length == 3


async def test_silent_workers_expire(controller: Controller, clock: Clock) -> None:
    await register(controller, W1, ["m"])
    await register(controller, W2, ["m", "only-w2"])
    await register(controller, W3, ["m"], check_heart_beat=False)  # never expires
    clock.now += 60
    assert await beat(controller, W1)
    clock.now += 60
    assert (await controller.models()).models == ["m"]
    assert list(await addresses(controller, "m")) == [W1, W3]
    assert await controller.remove_expired() == [W2]
    assert not await beat(controller, W2)  # it has to register again


async def test_shortest_queue_counts_each_pick(controller: Controller) -> None:
    await register(controller, W1, ["m"])
    await register(controller, W2, ["m"])
    await register(controller, W3, ["other"])
    picks = [await address(controller, "m") for _ in range(4)]
    assert sorted(picks) == [W1, W1, W2, W2]
    assert picks[0] != picks[1]
    await beat(controller, W1, queue=10)
    await beat(controller, W2, queue=0)
    assert {await address(controller, "m") for _ in range(5)} == {W2}
    assert await address(controller, "nobody-serves-it") == ""


async def test_lottery_picks_among_the_models_workers(clock: Clock, workers: Workers) -> None:
    settings = Settings(namespace="unit", dispatch_method="lottery")
    async with Controller(settings, MemoryHashStore(), transport=workers.transport(),
                          clock=clock) as controller:
        await register(controller, W1, ["m"])
        await register(controller, W2, ["m"])
        await register(controller, W3, ["other"])
        picks = [await address(controller, "m") for _ in range(40)]
        assert set(picks) == {W1, W2}
        assert (await controller.status()).queue_length == 0  # a lottery counts nothing


async def test_refresh_asks_every_worker_and_drops_those_that_do_not_answer(
        controller: Controller, workers: Workers) -> None:
    await register(controller, W1, ["m"])
    await register(controller, W2, ["m"])
    before = await addresses(controller, "m")
    workers.statuses[W1] = WorkerStatus(model_names=["m", "new"], queue_length=4)
    await controller.refresh()
    after = await addresses(controller, "m")
    assert list(after) == [W1]
    assert after[W1] != before[W1]  # a new registration
    assert (await controller.models()).models == ["m", "new"]
    assert (await controller.status()).queue_length == 4


async def test_ready_while_the_store_answers(controller: Controller) -> None:
    assert await controller.ready()


async def test_a_controller_used_before_it_starts_says_so() -> None:
    controller = Controller(SETTINGS, MemoryHashStore())
    with pytest.raises(NotStartedError):
        await controller.models()
    async with controller:
        assert (await controller.models()).models == []
    with pytest.raises(NotStartedError):
        await controller.models()
