"""docker-compose.yml, checked by reading it: no Docker engine runs the tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from consumers.health import create_health_app
from contracts.settings import Settings
from controller.app import create_controller_app
from mqgate_cli import build_parser
from workers.app import WorkerConfig, create_worker_app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
MQGATE = {name: svc for name, svc in SERVICES.items() if svc.get("image") == "mqgate:latest"}


def app_of(command: list[str]) -> FastAPI:
    kind = command[0]
    settings = Settings()
    if kind == "api":
        return create_app(settings)
    if kind == "controller":
        return create_controller_app(settings)
    if kind == "dispatcher":
        return create_health_app({})
    if kind == "worker":
        return create_worker_app(WorkerConfig(address="http://w", controller_url=None))
    raise AssertionError(f"no app known for {kind}")


def answers(command: list[str], method: str, path: str) -> int:
    """The status the process's real app gives the healthcheck (no lifespan: no I/O)."""
    return TestClient(app_of(command)).request(method, path).status_code


def test_every_mqgate_process_of_the_stack_is_there() -> None:
    kinds = {svc["command"][0] for svc in MQGATE.values()}
    assert kinds == {"api", "dispatcher", "controller", "worker"}
    assert {"rabbitmq", "redis", "proxy"} <= set(SERVICES)
    assert "management" in SERVICES["rabbitmq"]["image"]


@pytest.mark.parametrize("name", sorted(MQGATE))
def test_commands_parse_with_the_real_cli(name: str) -> None:
    command = MQGATE[name]["command"]
    args = build_parser().parse_args(command)
    assert args.command == command[0]


@pytest.mark.parametrize("name", sorted(MQGATE))
def test_environment_names_real_settings(name: str) -> None:
    fields = {f"MQGATE_{f.upper()}" for f in Settings.model_fields}
    env = MQGATE[name].get("environment", {})
    assert env
    unknown = {key for key in env if key.startswith("MQGATE_")} - fields
    assert not unknown


@pytest.mark.parametrize("name", sorted(MQGATE))
def test_healthchecks_hit_real_routes_on_the_right_port(name: str) -> None:
    service = MQGATE[name]
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z_]+)", test)
    assert match, test
    port, path = int(match.group(1)), match.group(2)
    command = service["command"]
    if command[0] == "dispatcher":
        assert int(service["environment"]["MQGATE_METRICS_PORT"]) == port
        assert service["environment"]["MQGATE_METRICS_HOST"] == "0.0.0.0"
    else:
        assert build_parser().parse_args(command).port == port
        assert build_parser().parse_args(command).host == "0.0.0.0"
    method = "POST" if "method='POST'" in test else "GET"
    assert answers(command, method, path) == 200


def test_dependencies_wait_for_health() -> None:
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy", name
            assert "healthcheck" in SERVICES[dependency], dependency


def test_dispatcher_scales_and_api_has_two_replicas_behind_the_proxy() -> None:
    dispatcher = SERVICES["dispatcher"]
    assert "container_name" not in dispatcher and "ports" not in dispatcher
    assert SERVICES["api"]["deploy"]["replicas"] == 2
    assert "ports" not in SERVICES["api"]
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server api:8000" in conf
    assert "proxy_buffering off" in conf
    mount = SERVICES["proxy"]["volumes"][0].split(":")[0]
    assert (ROOT / mount).resolve() == (ROOT / "deploy" / "nginx.conf").resolve()


def test_worker_advertises_its_service_name() -> None:
    command = SERVICES["worker"]["command"]
    assert build_parser().parse_args(command).address == "http://worker:21002"


def test_dockerfile_runs_as_a_user_with_the_mqgate_entry_point() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["mqgate"]' in dockerfile
    cmd = re.search(r"^CMD (\[.*\])", dockerfile, re.MULTILINE)
    assert cmd
    assert build_parser().parse_args(yaml.safe_load(cmd.group(1))).command == "serve"
    for copied in re.findall(r"^COPY (\S+) \./", dockerfile, re.MULTILINE):
        assert (ROOT / copied).exists(), copied
