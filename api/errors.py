"""One place that turns every failure into OpenAI's error shape and the right status."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from contracts.errors import (
    CapacityError,
    MethodNotAllowedError,
    MqgateError,
    NotFoundError,
    PoisonJobError,
    RequestError,
    UnavailableError,
    WorkerError,
)

log = logging.getLogger(__name__)


def error_body(error: MqgateError) -> bytes:
    return error.envelope().model_dump_json().encode()


def error_response(error: MqgateError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(error, CapacityError | UnavailableError) or error.status_code == 429:
        headers["Retry-After"] = "1"  # an upstream's own 429 too
    if isinstance(error, WorkerError | PoisonJobError) and not error.retryable:
        headers["x-should-retry"] = "false"
    return Response(error_body(error), status_code=error.status_code, headers=headers,
                    media_type="application/json")


def validation_message(errors: list[dict[str, object]]) -> tuple[str, str | None]:
    """A readable message and the offending parameter, from pydantic's error list."""
    if not errors:
        return "invalid request body", None
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]  # type: ignore[attr-defined]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid value"))
    return (f"{message} - '{param}'" if param else message), param


async def _mqgate_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MqgateError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message, param = validation_message(list(exc.errors()))
    return error_response(RequestError(message, param=param))


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    error: MqgateError
    if exc.status_code == 404:
        error = NotFoundError("unknown route; see /v1/models, /v1/chat/completions, "
                              "/v1/completions and /v1/embeddings")
    elif exc.status_code == 405:
        error = MethodNotAllowedError("method not allowed on this route")
    elif exc.status_code < 500:
        error = RequestError(str(exc.detail))
    else:
        error = MqgateError("internal error")
    return error_response(error)


async def _unhandled(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return Response(orjson.dumps({"error": {"message": "internal server error",
                                            "type": "server_error", "param": None,
                                            "code": "internal_error"}}),
                    status_code=500, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MqgateError, _mqgate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
