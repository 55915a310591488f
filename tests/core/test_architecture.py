"""The layout rules of docs/architecture.md, checked on the source: who may import whom, SQL
only in the store, small modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from support.paths import ROOT

PACKAGE = ROOT / "tlsrpt_reporter"
COLLECTD = ROOT / "collectd"

# What each part may import besides itself (docs/architecture.md). "core" is the top-level
# modules of tlsrpt_reporter (model, domain, errors, logs, exposition).
ALLOWED = {
    "core": set(),
    "wire": {"core"},
    "store": {"core", "wire"},
    "ingest": {"core", "wire", "store"},
    "config": {"core"},
    "report": {"core", "wire", "store", "config"},
    "schedule": {"core", "config", "report", "store"},
    "deliver": {"core", "config", "store", "report", "schedule"},
    "demo": {"core", "wire", "store", "ingest", "config", "report", "schedule", "deliver"},
    # Reads what the others wrote; nothing imports it but the command line.
    "summary": {"core", "config", "report", "store", "schedule"},
    "cli": {
        "core",
        "wire",
        "store",
        "ingest",
        "config",
        "report",
        "schedule",
        "deliver",
        "demo",
        "summary",
    },
    "collectd": {"core", "wire", "store", "config"},
}
# The one documented exception: check-config tries the DKIM keys with the deliver code, and
# imports it inside the function that needs it (the collector never pays for it).
EXCEPTIONS = {("tlsrpt_reporter/config/check.py", "deliver")}
MAX_LINES = 400
_SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|BEGIN|COMMIT|ROLLBACK|PRAGMA)\b")


def _sources() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *COLLECTD.glob("*.py")])


def _part(path: Path) -> str:
    if path.is_relative_to(COLLECTD):
        return "collectd"
    inner = path.relative_to(PACKAGE).parts
    return inner[0] if len(inner) > 1 else "core"


def _target(module: str) -> str | None:
    if module.startswith("tlsrpt_collectd"):
        return "collectd"
    if not module.startswith("tlsrpt_reporter"):
        return None
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "core"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "tlsrpt_reporter":
                found |= {f"tlsrpt_reporter.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_every_part_imports_only_what_the_map_allows() -> None:
    wrong = []
    for path in _sources():
        part = _part(path)
        rel = str(path.relative_to(ROOT))
        for module in _imports(path):
            target = _target(module)
            if target is None or target == part or (rel, target) in EXCEPTIONS:
                continue
            if target not in ALLOWED[part]:
                wrong.append(f"{rel} ({part}) imports {module} ({target})")
    assert wrong == []


def test_sql_appears_only_in_the_store() -> None:
    found = []
    for path in _sources():
        if path.is_relative_to(PACKAGE / "store"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and _SQL.match(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_source_module_is_longer_than_one_reader_can_hold(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES
