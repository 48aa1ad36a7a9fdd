"""API-key check and body-size limit, as ASGI middleware so they cover every route."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from contracts.errors import AuthenticationError, MqgateError, PayloadTooLargeError

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


async def _send_error(send: Send, error: MqgateError) -> None:
    body = error_body(error)
    await send({"type": "http.response.start", "status": error.status_code,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def key_matches(presented: bytes, keys: Iterable[bytes]) -> bool:
    """Constant-time comparison against every key; no early exit."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: Iterable[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and key_matches(token.strip(), self.keys)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or not self.keys or scope["path"] in OPEN_PATHS
                or scope["method"] == "OPTIONS" or self._authorized(scope)):
            await self.app(scope, receive, send)
            return
        await _send_error(send, AuthenticationError(
            "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'."))


class BodyLimitMiddleware:
    """413 for a body over ``limit`` bytes, decided from Content-Length or while reading."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLargeError(f"request body is larger than {self.limit} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await _send_error(send, too_large)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large
            return message

        await self.app(scope, limited, send)
