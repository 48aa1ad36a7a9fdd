"""Which lanes a dispatcher follows, and its share of each model's worker slots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from consumers.lanes import LaneManager, share
from contracts.errors import ControllerUnavailableError
from contracts.settings import Settings
from discovery.cache import MemoryCache


@dataclass
class Source:
    """Stands in for a JobSource: counts the lanes' consumers as the broker would."""

    others: dict[str, int] = field(default_factory=dict)  # other dispatchers per lane
    followed: dict[str, int] = field(default_factory=dict)
    calls: int = 0

    async def follow(self, lanes: Mapping[str, int]) -> None:
        self.followed = dict(lanes)
        self.calls += 1

    async def lane_consumers(self, model: str) -> int | None:
        return self.others.get(model, 0) + (1 if model in self.followed else 0)


@dataclass
class Catalog:
    served: list[str]
    down: bool = False
    refreshed: int = 0

    async def models(self) -> list[str]:
        if self.down:
            raise ControllerUnavailableError("down")
        return self.served

    async def refresh(self) -> None:
        self.refreshed += 1


def manager(source: Source, catalog: Catalog, slots: dict[str, int],
            concurrency: int = 64) -> LaneManager:
    async def capacity(model: str) -> int:
        return slots.get(model, 0)

    return LaneManager(source, catalog, capacity, MemoryCache(), Settings(concurrency=concurrency))


@pytest.mark.parametrize(("slots", "consumers", "following", "expected"), [
    (5, 0, False, 5),  # alone: every slot
    (5, 1, False, 3),  # joining one other: half, rounded up
    (5, 2, True, 3),  # one of two
    (10, 4, True, 3),
    (1, 3, True, 1),  # never below one
    (500, 0, False, 64),  # never above the concurrency
])
def test_a_dispatchers_share_of_a_models_slots(slots: int, consumers: int, following: bool,
                                               expected: int) -> None:
    assert share(slots, consumers, following=following, ceiling=64) == expected


async def test_every_listed_model_with_workers_is_followed_with_its_share() -> None:
    source = Source(others={"busy": 1})
    lanes = manager(source, Catalog(["busy", "quiet", "unserved"]), {"busy": 10, "quiet": 5})
    await lanes.reconcile()
    assert source.followed == {"busy": 5, "quiet": 5}


async def test_a_model_that_goes_is_no_longer_followed() -> None:
    source, catalog = Source(), Catalog(["a", "b"])
    lanes = manager(source, catalog, {"a": 5, "b": 5})
    await lanes.reconcile()
    catalog.served = ["a"]
    await lanes.reconcile()
    assert source.followed == {"a": 5}


async def test_nothing_changes_while_the_controller_is_down() -> None:
    source, catalog = Source(), Catalog(["a"])
    lanes = manager(source, catalog, {"a": 5})
    await lanes.reconcile()
    catalog.down = True
    await lanes.reconcile()
    assert source.followed == {"a": 5}
    assert source.calls == 1  # unchanged lanes are not re-followed


async def test_a_share_follows_the_number_of_dispatchers() -> None:
    source = Source()
    lanes = manager(source, Catalog(["a"]), {"a": 6})
    await lanes.reconcile()
    assert source.followed == {"a": 6}
    source.others["a"] = 2  # two more dispatchers came
    await lanes.reconcile()
    assert source.followed == {"a": 2}
