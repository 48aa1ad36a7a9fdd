"""The controller lists upstream models beside workers' and hands out their entries."""

from __future__ import annotations

from pathlib import Path

import httpx

from contracts.fastchat import WorkerRegistered
from contracts.upstream import UpstreamsResponse
from controller.app import controller_app
from controller.config import UpstreamConfig
from controller.registry import MemoryHashStore
from controller.service import Controller
from tests.unit.controller.conftest import SETTINGS
from tests.unit.controller.fakes import Workers


def write(path: Path, *models: str) -> None:
    path.write_text("model_list:\n" + "".join(
        f"  - model_name: {m}\n    litellm_params:\n      model: openai/{m}-served\n"
        f"      api_base: http://upstream:8000/v1\n      api_key: os.environ/KEY\n"
        for m in models))


async def test_upstream_models_are_listed_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    write(path, "up-a")
    notices: list[WorkerRegistered] = []

    async def relay(_channel: str, message: str) -> None:
        notices.append(WorkerRegistered.model_validate_json(message))

    controller = Controller(SETTINGS, MemoryHashStore(relay=relay),
                            transport=Workers().transport(),
                            upstreams=UpstreamConfig(str(path)))
    app = controller_app(controller)
    async with controller, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                             base_url="http://controller") as client:
        assert (await client.post("/list_models")).json()["models"] == ["up-a"]
        assert (await client.post("/list_language_models")).json()["models"] == ["up-a"]
        assert (await client.post("/list_multimodal_models")).json()["models"] == []
        answer = UpstreamsResponse.model_validate_json(
            (await client.post("/list_upstreams", json={"model": "up-a"})).content)
        assert [e.model for e in answer.entries] == ["up-a-served"]
        assert answer.entries[0].key is not None and answer.entries[0].key.env == "KEY"
        assert (await client.post("/list_upstreams", json={"model": "x"})).json() == {
            "entries": []}

        write(path, "up-a", "up-b")
        await controller.reload_upstreams()
        assert (await client.post("/list_models")).json()["models"] == ["up-a", "up-b"]
        assert notices[-1].model_names == ["up-b"]
