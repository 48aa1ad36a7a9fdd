"""The error tree of mqgate.

Every failure a client can see is one of these classes. Each class carries the HTTP status, the
OpenAI error ``type`` and ``code`` it maps to, and whether a dispatcher may retry it on another
worker::

    MqgateError                          500 server_error (code internal_error)
    ├── RequestError                     400 invalid_request_error
    │   ├── ContextLengthError           400 context_length_exceeded
    │   ├── UnsupportedFeatureError      400 unsupported_feature
    │   └── UnsupportedParameterError    400 unsupported_parameter
    ├── AuthenticationError              401 invalid_api_key
    ├── ModelNotFoundError               404 model_not_found
    ├── NotFoundError                    404 not_found
    ├── MethodNotAllowedError            405 method_not_allowed
    ├── PayloadTooLargeError             413 payload_too_large
    ├── CapacityError                    429 queue_full
    ├── UnavailableError                 503 service_unavailable
    │   ├── BrokerUnavailableError       503 broker_unavailable
    │   ├── ControllerUnavailableError   503 controller_unavailable
    │   ├── NoDispatcherError            503 no_dispatcher
    │   ├── NoWorkerError                503 no_worker_available
    │   └── UpstreamConfigError          503 upstream_misconfigured
    ├── DeadlineExceededError            504 deadline_exceeded
    ├── PoisonJobError                   500 job_failed_repeatedly
    ├── WorkerError                      502 worker_error
    │   ├── WorkerConnectError           502 worker_unreachable   (retryable)
    │   └── WorkerStreamError            502 worker_stream_failed
    └── UpstreamRejectedError            the upstream's own 4xx status, error and code
                                         (a 429 is retryable on another entry)
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class ErrorDetail(BaseModel):
    """The inner object of OpenAI's error envelope."""

    model_config = ConfigDict(extra="forbid")

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    """``{"error": {"message", "type", "param", "code"}}``, OpenAI's error body."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class MqgateError(Exception):
    """Root of every error mqgate reports to a client."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def detail(self) -> ErrorDetail:
        return ErrorDetail(message=self.message, type=self.error_type, param=self.param,
                           code=self.code)

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(error=self.detail())


class RequestError(MqgateError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request_error"


class ContextLengthError(RequestError):
    code = "context_length_exceeded"


class UnsupportedFeatureError(RequestError):
    code = "unsupported_feature"


class UnsupportedParameterError(RequestError):
    """A parameter that asks for something the model's workers cannot do (FastChat workers:
    tools, response formats, chat logprobs, logit bias, image parts, ...)."""

    code = "unsupported_parameter"


class AuthenticationError(MqgateError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class ModelNotFoundError(MqgateError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class NotFoundError(MqgateError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowedError(MqgateError):
    status_code = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLargeError(MqgateError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class CapacityError(MqgateError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "queue_full"


class UnavailableError(MqgateError):
    status_code = 503
    error_type = "service_unavailable"
    code = "service_unavailable"


class BrokerUnavailableError(UnavailableError):
    code = "broker_unavailable"


class ControllerUnavailableError(UnavailableError):
    code = "controller_unavailable"


class NoDispatcherError(UnavailableError):
    """No dispatcher consumes the jobs queue, and none came within the bounded wait."""

    code = "no_dispatcher"


class NoWorkerError(UnavailableError):
    code = "no_worker_available"


class UpstreamConfigError(UnavailableError):
    """An upstream entry cannot be called from this dispatcher (its key is not here)."""

    code = "upstream_misconfigured"


class DeadlineExceededError(MqgateError):
    status_code = 504
    error_type = "timeout_error"
    code = "deadline_exceeded"


class PoisonJobError(MqgateError):
    """The job was delivered to dispatchers as often as allowed and never finished."""

    code = "job_failed_repeatedly"


class WorkerError(MqgateError):
    status_code = 502
    error_type = "server_error"
    code = "worker_error"


class WorkerConnectError(WorkerError):
    code = "worker_unreachable"
    retryable = True


class WorkerStreamError(WorkerError):
    code = "worker_stream_failed"


class UpstreamRejectedError(MqgateError):
    """An OpenAI-compatible upstream refused the request with a 4xx: the client sees that
    status and the upstream's error as it was (a 400 from vLLM stays a 400 with its message).
    ``rejection`` makes the class of each status."""

    code = "upstream_rejected"

    def __init__(self, message: str, *, param: str | None = None,
                 detail: ErrorDetail | None = None) -> None:
        super().__init__(message, param=param)
        self._detail = detail

    def detail(self) -> ErrorDetail:
        if self._detail is not None:
            return self._detail
        return super().detail()


_REJECTIONS: dict[int, type[UpstreamRejectedError]] = {}


def rejection(status: int, detail: ErrorDetail) -> UpstreamRejectedError:
    """The error for an upstream's ``status`` (4xx) with its ``detail``."""
    cls = _REJECTIONS.get(status)
    if cls is None:
        cls = _REJECTIONS[status] = type(f"Upstream{status}Error", (UpstreamRejectedError,), {
            "status_code": status, "retryable": status == 429,
            "__doc__": f"An upstream's {status}."})
    return cls(detail.message, param=detail.param, detail=detail)


_BY_CODE: dict[str, type[MqgateError]] = {}


def _register(cls: type[MqgateError]) -> None:
    _BY_CODE.setdefault(cls.code, cls)
    for sub in cls.__subclasses__():
        _register(sub)


_register(MqgateError)


def error_from_detail(detail: ErrorDetail, status: int | None = None) -> MqgateError:
    """Rebuild the typed error that a Reply carried across the broker; ``status`` is set for
    an upstream's own error, which keeps its status."""
    if status is not None:
        return rejection(status, detail)
    cls = _BY_CODE.get(detail.code or "", MqgateError)
    return cls(detail.message, param=detail.param)
