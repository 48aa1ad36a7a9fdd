"""Errors as the api answers them: status, OpenAI's body, and the headers clients act on."""

from __future__ import annotations

import orjson

from api.errors import error_response
from contracts.errors import CapacityError, ErrorDetail, WorkerError, rejection


def test_an_upstreams_429_says_when_to_retry_as_the_gateways_own_does() -> None:
    for error in (CapacityError("full"), rejection(429, ErrorDetail(
            message="slow down", type="rate_limit_error", param=None, code="rate_limited"))):
        response = error_response(error)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"


def test_an_upstreams_400_keeps_its_body_and_is_not_retried_later() -> None:
    detail = ErrorDetail(message="bad schema", type="invalid_request_error",
                         param="response_format", code=None)
    response = error_response(rejection(400, detail))
    assert response.status_code == 400
    assert "retry-after" not in response.headers
    assert orjson.loads(response.body)["error"]["message"] == "bad schema"


def test_a_worker_failure_tells_the_sdk_not_to_retry() -> None:
    assert error_response(WorkerError("broke")).headers["x-should-retry"] == "false"
