"""Every package imports only what docs/architecture.md's package table allows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE_ROW = re.compile(r"^\| `(\w+)/` \| .* \| (?P<allowed>[^|]*) \|$")


def allowed_imports() -> dict[str, set[str]]:
    """Package -> the packages of mqgate it may import, from the architecture doc's table."""
    rows = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        if match := TABLE_ROW.match(line):
            rows[match.group(1)] = set(re.findall(r"`(\w+)`", match.group("allowed")))
    return rows


TABLE = allowed_imports()


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_table_names_every_package() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert set(TABLE) == packages
    for allowed in TABLE.values():
        assert allowed <= packages


@pytest.mark.parametrize("package", sorted(TABLE))
def test_imports_follow_the_table(package: str) -> None:
    forbidden = set(TABLE) - TABLE[package] - {package}
    wrong = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & forbidden)
             for path in sorted((ROOT / package).rglob("*.py"))}
    assert {path: names for path, names in wrong.items() if names} == {}
