from __future__ import annotations

import importlib.metadata
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqgate_cli import build_parser
from tests.stack import ROOT, free_port

COMMANDS = ["api", "dispatcher", "controller", "serve", "worker"]


def mqgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``mqgate`` run as a user runs it, without the broker or Redis of the environment."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MQGATE_AMQP_URL", "MQGATE_REDIS_URL")}
    return subprocess.run([sys.executable, "-m", "mqgate_cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={**clean, **(env or {})})


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return mqgate("serve", "--port", str(free_port()), "--controller-port", str(free_port()),
                  "--worker-port", str(free_port()), *args, env=env)


def option_entries(help_text: str) -> dict[str, str]:
    """Each option of a help page with the text that describes it."""
    entries: dict[str, str] = {}
    current = ""
    for line in help_text.split("options:", 1)[1].splitlines():
        match = re.match(r"  (-{1,2}[\w-]+)", line)
        if match:
            current = match.group(1)
            entries[current] = line
        elif current:
            entries[current] += " " + line.strip()
    return entries


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    out = mqgate(command, "--help")
    assert out.returncode == 0
    assert f"usage: mqgate {command}" in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_default(command: str) -> None:
    entries = option_entries(mqgate(command, "--help").stdout)
    entries.pop("-h")
    assert entries
    undocumented = [option for option, text in entries.items() if "(default:" not in text]
    assert not undocumented


def test_help_shows_the_values_of_defaults() -> None:
    entries = option_entries(mqgate("serve", "--help").stdout)
    assert "(default: 8000)" in entries["--port"]
    assert "(default: 127.0.0.1)" in entries["--host"]
    assert "GGUF's own context length, at most 8192" in entries["--context-length"]


def test_version_is_the_installed_distribution() -> None:
    out = mqgate("--version")
    assert out.returncode == 0
    assert out.stdout == f"mqgate {importlib.metadata.version('mqgate')}\n"


def test_defaults() -> None:
    parser = build_parser()
    assert parser.parse_args(["api"]).port == 8000
    assert parser.parse_args(["controller"]).port == 21001
    assert parser.parse_args(["dispatcher", "--concurrency", "4"]).concurrency == 4
    assert parser.parse_args(["serve"]).context_length is None  # the GGUF's own


def assert_one_line_error(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("mqgate ")
    for word in words:
        assert word in out.stderr


@pytest.fixture
def not_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_text("<html>a download page, not a model</html>\n")
    return path


@pytest.fixture
def cut_short(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + b"\x00" * 5)
    return path


def test_missing_model_file_is_one_line() -> None:
    assert_one_line_error(serve("--model-path", "/nonexistent.gguf"),
                          "/nonexistent.gguf does not exist")


def test_file_that_is_not_gguf_is_one_line(not_gguf: Path) -> None:
    assert_one_line_error(serve("--model-path", str(not_gguf)), str(not_gguf),
                          "is not a GGUF file")


def test_gguf_cut_short_is_one_line(cut_short: Path) -> None:
    assert_one_line_error(serve("--model-path", str(cut_short)), "corrupt or cut short")


def test_worker_with_a_bad_model_is_one_line(not_gguf: Path) -> None:
    out = mqgate("worker", "--port", str(free_port()), "--model-path", str(not_gguf))
    assert_one_line_error(out, "mqgate worker:", "is not a GGUF file")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


def test_port_in_use_is_one_line(taken_port: int) -> None:
    out = mqgate("serve", "--port", str(taken_port), "--controller-port", str(free_port()))
    assert_one_line_error(out, f"127.0.0.1:{taken_port}", "--port")


def test_redis_that_does_not_answer_is_one_line() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert_one_line_error(serve(env={"MQGATE_REDIS_URL": url}), url, "does not answer")


def test_rabbitmq_that_does_not_answer_is_one_line_without_its_password() -> None:
    url = f"amqp://guest:s3cret@127.0.0.1:{free_port()}/"
    out = serve(env={"MQGATE_AMQP_URL": url})
    assert_one_line_error(out, "RabbitMQ at amqp://guest:***@127.0.0.1", "does not answer")
    assert "s3cret" not in out.stderr
