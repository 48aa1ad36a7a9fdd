from __future__ import annotations

import subprocess
import sys

import pytest

from mqgate_cli import build_parser


@pytest.mark.parametrize("command", ["api", "dispatcher", "controller"])
def test_every_subcommand_has_help(command: str) -> None:
    out = subprocess.run([sys.executable, "-m", "mqgate_cli", command, "--help"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert f"usage: mqgate {command}" in out.stdout


def test_defaults() -> None:
    parser = build_parser()
    assert parser.parse_args(["api"]).port == 8000
    assert parser.parse_args(["controller"]).port == 21001
    assert parser.parse_args(["dispatcher", "--concurrency", "4"]).concurrency == 4
