from __future__ import annotations

import pytest

from contracts import errors


@pytest.mark.parametrize("cls", [errors.RequestError, errors.ContextLengthError,
                                 errors.AuthenticationError, errors.ModelNotFoundError,
                                 errors.CapacityError, errors.NoWorkerError,
                                 errors.BrokerUnavailableError, errors.DeadlineExceededError,
                                 errors.WorkerConnectError, errors.WorkerStreamError])
def test_errors_survive_a_trip_through_a_reply(cls: type[errors.MqgateError]) -> None:
    original = cls("message", param="p")
    rebuilt = errors.error_from_detail(original.detail())
    assert type(rebuilt) is cls
    assert rebuilt.status_code == original.status_code
    assert rebuilt.param == "p"


def test_envelope_is_openai_shaped() -> None:
    body = errors.CapacityError("full").envelope().model_dump()
    assert body == {"error": {"message": "full", "type": "rate_limit_error", "param": None,
                              "code": "queue_full"}}


def test_only_connect_failures_are_retryable() -> None:
    retryable = [c for c in (errors.WorkerConnectError, errors.WorkerStreamError,
                             errors.NoWorkerError, errors.RequestError) if c.retryable]
    assert retryable == [errors.WorkerConnectError]
