"""Reading the config file (``MQGATE_CONFIG``): YAML, or JSON, which YAML reads too."""

from __future__ import annotations

from pathlib import Path

import yaml


class ConfigFileError(Exception):
    """The file cannot be read or parsed; the message says which and why."""


def read_config_file(path: str | Path) -> object:
    """The file's content as plain data (dicts, lists, strings, numbers)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigFileError(f"{path} is not valid YAML{where}: "
                              f"{getattr(exc, 'problem', None) or exc}") from None
