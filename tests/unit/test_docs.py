"""The settings documentation covers every setting there is, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from contracts.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {f"MQGATE_{name.upper()}" for name in Settings.model_fields}


def documented(path: Path) -> set[str]:
    return set(re.findall(r"`(MQGATE_[A-Z_]+)`", path.read_text()))


def test_configuration_doc_lists_every_setting() -> None:
    assert documented(ROOT / "docs" / "configuration.md") == SETTINGS


def test_readme_names_only_real_settings() -> None:
    assert documented(ROOT / "README.md") <= SETTINGS
