"""docker-compose.yml, checked by reading it: no Docker engine runs the tests."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings
from controller.app import create_controller_app
from mqgate_cli import build_parser
from runtime.health import create_health_app
from workers.app import WorkerConfig, create_worker_app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
MQGATE = {name: svc for name, svc in SERVICES.items()
          if str(svc.get("image", "")).partition(":")[0] == "mqgate"}
DOCKERFILE = (ROOT / "Dockerfile").read_text()
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+")


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
    args, unknown = build_parser().parse_known_args(command)
    assert args.command == command[0]
    assert not unknown


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


def test_every_mqgate_service_runs_the_one_image_that_one_service_builds() -> None:
    assert {svc["image"] for svc in MQGATE.values()} == {f"mqgate:{VERSION}"}
    builders = [name for name, svc in MQGATE.items() if "build" in svc]
    assert len(builders) == 1, builders  # two builds of one tag race under buildx bake
    build = MQGATE[builders[0]]["build"]
    context = build["context"] if isinstance(build, dict) else build
    assert (ROOT / context).resolve() == ROOT
    assert (ROOT / context / build.get("dockerfile", "Dockerfile")).is_file()
    for name, svc in MQGATE.items():
        if name not in builders:  # the image comes from the build, never from a registry
            assert svc["pull_policy"] == "never", name
            assert builders[0] in depends_on_transitively(name), name


def depends_on_transitively(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dependency in SERVICES[todo.pop()].get("depends_on", {}):
            if dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return seen


def image_tags() -> dict[str, str]:
    """Every image the stack runs or builds from: service images and the Dockerfile's FROMs."""
    images = {name: svc["image"] for name, svc in SERVICES.items() if "image" in svc}
    for index, image in enumerate(re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)):
        images[f"Dockerfile FROM #{index + 1}"] = image
    return images


@pytest.mark.parametrize(("where", "image"), sorted(image_tags().items()))
def test_images_are_pinned_to_exact_versions(where: str, image: str) -> None:
    name, _, tag = image.rpartition("/")[2].partition(":")
    assert name and "@" not in tag, where
    assert EXACT_VERSION.match(tag), f"{where}: {image} is not pinned to a x.y.z version"


def published(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) of compose's short syntax, ``[address:]host:container``."""
    pairs = set()
    for entry in service.get("ports", []):
        host, container = str(entry).rsplit(":", 2)[-2:]
        pairs.add((int(host), int(container)))
    return pairs


@pytest.mark.parametrize(("name", "port"), [("rabbitmq", 5672), ("redis", 6379)])
def test_broker_and_redis_publish_their_ports_and_report_health(name: str, port: int) -> None:
    """`docker compose up -d --wait rabbitmq redis` gives a host its broker and its Redis."""
    service = SERVICES[name]
    assert (port, port) in published(service)
    assert service["healthcheck"]["test"][0] == "CMD"


def test_rabbitmq_is_healthy_only_once_it_takes_connections() -> None:
    test = SERVICES["rabbitmq"]["healthcheck"]["test"]
    assert "check_port_connectivity" in test


def test_dockerfile_builds_llama_cpp_for_any_cpu() -> None:
    """No -march=native: an image built on one machine runs on another."""
    default = re.search(r'^ARG LLAMA_CMAKE_ARGS="([^"]*)"', DOCKERFILE, re.MULTILINE)
    assert default
    flags = default.group(1).split()
    assert "-DGGML_NATIVE=OFF" in flags
    assert re.search(r'^ENV CMAKE_ARGS="\$\{LLAMA_CMAKE_ARGS\}"', DOCKERFILE, re.MULTILINE)
    makefile = re.search(r"^export CMAKE_ARGS \?= (.*)$", (ROOT / "Makefile").read_text(),
                         re.MULTILINE)
    assert makefile
    assert set(makefile.group(1).split()) <= set(flags)  # what a local build turns off
    assert DOCKERFILE.index("ARG LLAMA_CMAKE_ARGS") < DOCKERFILE.index("RUN pip wheel")


def test_the_proxy_keeps_metrics_to_the_scraper() -> None:
    """/metrics answers without a key, so the public proxy does not pass it on."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"location = /metrics \{\s*return 404;\s*\}", conf)


def test_the_proxy_image_knows_upstream_resolve() -> None:
    """``server api:8000 resolve`` (every replica, re-resolved) needs nginx 1.27.3 or later."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"server api:8000 resolve;", conf)
    version = SERVICES["proxy"]["image"].partition(":")[2].partition("-")[0]
    assert tuple(int(part) for part in version.split(".")) >= (1, 27, 3)
