"""A RabbitMQ user whose rights cover one namespace only, made with ``rabbitmqctl``."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _rabbitmqctl(*args: str) -> None:
    executable = shutil.which("rabbitmqctl")
    if executable is None:
        raise FileNotFoundError("rabbitmqctl is not on PATH")
    subprocess.run([executable, "-q", *args], check=True, capture_output=True, timeout=60)


def _unavailable(reason: str) -> None:
    """Skipped locally, a failure under CI (as the broker itself is)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"cannot make a restricted RabbitMQ user: {reason}", pytrace=False)
    pytest.skip(f"cannot make a restricted RabbitMQ user: {reason}")


@contextlib.contextmanager
def restricted_user(amqp_url: str, namespace: str) -> Iterator[str]:
    """The AMQP URL of a new user on a new vhost (both named ``namespace``) whose configure,
    write and read rights there are ``^<namespace>\\.`` and nothing else: not the default
    exchange, not ``amq.*``. Both are deleted afterwards."""
    url = urlsplit(amqp_url)
    if url.hostname not in LOOPBACK:
        _unavailable(f"rabbitmqctl reaches only a local broker, not {url.hostname}")
    password = secrets.token_hex(16)
    rights = f"^{namespace}\\."
    created: list[tuple[str, ...]] = []
    try:
        try:
            _rabbitmqctl("add_vhost", namespace)
            created.append(("delete_vhost", namespace))
            _rabbitmqctl("add_user", namespace, password)
            created.append(("delete_user", namespace))
            _rabbitmqctl("set_permissions", "-p", namespace, namespace, rights, rights, rights)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            _unavailable(f"{exc!r} {detail.decode(errors='replace').strip()}")
        host = f"[{url.hostname}]" if ":" in str(url.hostname) else url.hostname
        netloc = f"{namespace}:{password}@{host}:{url.port or 5672}"
        yield f"{url.scheme}://{netloc}/{quote(namespace, safe='')}"
    finally:
        for command in reversed(created):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                _rabbitmqctl(*command)
