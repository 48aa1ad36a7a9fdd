"""schemathesis against the api's own OpenAPI schema: no input gets a 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import cleanup_namespace
from tests.stack import Stack

pytestmark = pytest.mark.faults

KEY = "sk-fuzz-1"


@pytest.fixture(scope="module")
def fuzz_stack(services: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("fuzz"), env_extra={"MQGATE_API_KEYS": KEY,
                                                               "MQGATE_REQUEST_TIMEOUT": "10"})
    stack.api_key = KEY
    try:
        stack.start_serving_fake("w")
        yield stack
    finally:
        stack.stop()
        asyncio.run(cleanup_namespace(stack.namespace))


@pytest.fixture(scope="module")
def api_schema(fuzz_stack: Stack) -> schemathesis.BaseSchema:
    document = httpx.get(fuzz_stack.base_url + "/openapi.json", timeout=10,
                         headers={"Authorization": f"Bearer {KEY}"}).json()
    return schemathesis.openapi.from_dict(document)


def test_no_input_gets_a_server_error(api_schema: schemathesis.BaseSchema,
                                      fuzz_stack: Stack, figures: list[str]) -> None:
    tried: list[int] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            response = case.call(base_url=fuzz_stack.base_url,
                                 headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
            tried.append(response.status_code)
            assert response.status_code < 500, (case.path, case.body, response.text[:300])
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error"}
                assert set(body["error"]) == {"message", "type", "param", "code"}

        check()
    figures.append(f"schemathesis: {len(tried)} generated requests, statuses "
                   f"{sorted(set(tried))}, no 5xx")
