"""With API keys set, every route of the api asks for one except /healthz, /readyz and
/metrics (for load balancers, orchestrators and Prometheus), and the docs say so."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import OPEN_PATHS
from consumers.inprocess import InProcessTransport
from contracts.settings import Settings
from discovery.cache import MemoryCache

ROOT = Path(__file__).resolve().parents[3]
KEY = "sk-open-routes"
# the discard port: nothing listens, so the controller is unreachable at once
SETTINGS = Settings(api_keys=[KEY], controller_url="http://127.0.0.1:9")
APP = create_app(SETTINGS, queue=InProcessTransport(SETTINGS), cache=MemoryCache())


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(APP) as c:
        yield c


def keyed_routes() -> list[tuple[str, str]]:
    """(method, path) of every route the api documents but the open ones, and of the
    document itself; path parameters filled in."""
    found = [("GET", "/openapi.json")]
    for path, operations in APP.openapi()["paths"].items():
        if path not in OPEN_PATHS:
            found += [(method.upper(), re.sub(r"\{[^}]+\}", "x", path))
                      for method in operations]
    return found


def test_the_open_routes_are_the_health_and_metrics_routes() -> None:
    assert frozenset({"/healthz", "/readyz", "/metrics"}) == OPEN_PATHS
    assert set(APP.openapi()["paths"]) >= OPEN_PATHS


def test_health_and_metrics_answer_without_a_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "mqgate_api_requests_total" in client.get("/metrics").text
    ready = client.get("/readyz")
    assert ready.status_code == 503  # answered, not refused: the controller is unreachable
    assert ready.json()["checks"]["controller"] is False


@pytest.mark.parametrize(("method", "path"), [*keyed_routes(), ("GET", "/no-such-route")])
def test_every_other_route_wants_the_key(client: TestClient, method: str, path: str) -> None:
    refused = client.request(method, path)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    wrong = client.request(method, path, headers={"Authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401


def test_the_key_opens_the_routes(client: TestClient) -> None:
    response = client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code != 401


def test_the_docs_name_the_open_routes() -> None:
    readme = (ROOT / "README.md").read_text()
    (unauthorized,) = [line for line in readme.splitlines() if line.startswith("| 401 |")]
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    (keys,) = [line for line in configuration.splitlines()
               if line.startswith("| `MQGATE_API_KEYS`")]
    for line in (unauthorized, keys):
        assert set(re.findall(r"`(/[a-z]+)`", line)) == OPEN_PATHS, line
