"""``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from typing import Literal

from contracts.openai.common import WireModel


class Model(WireModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "mqgate"
    root: str | None = None
    parent: str | None = None


class ModelList(WireModel):
    object: Literal["list"] = "list"
    data: list[Model]
