from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.fastchat import WorkerRegistered
from contracts.settings import Settings
from controller.registry import MemoryHashStore
from controller.service import Controller
from tests.unit.controller.fakes import Clock, Workers

SETTINGS = Settings(namespace="unit", heart_beat_expiration=90)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def workers() -> Workers:
    return Workers()


@pytest.fixture
def notices() -> list[WorkerRegistered]:
    return []


@pytest.fixture
def settings() -> Settings:
    return SETTINGS


@pytest.fixture
async def controller(settings: Settings, clock: Clock, workers: Workers,
                     notices: list[WorkerRegistered]) -> AsyncIterator[Controller]:
    async def relay(channel: str, message: str) -> None:
        assert channel == settings.topology.registrations_channel
        notices.append(WorkerRegistered.model_validate_json(message))

    async with Controller(settings, MemoryHashStore(relay=relay),
                          transport=workers.transport(), clock=clock) as controller:
        yield controller
