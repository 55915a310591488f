"""The committed man pages are what ``make man`` writes from the argument parsers now: a new
option or command without a regenerated page fails here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

import pytest
from support.paths import ROOT

MAN = ROOT / "man"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("man_generate", MAN / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["tlsrpt-reporter.1", "tlsrpt-collectd.8"])
def test_the_committed_man_page_is_what_the_parsers_give_now(name: str) -> None:
    fresh = generator().pages()[name]
    assert (MAN / name).read_text() == fresh, f"man/{name} is stale: run 'make man'"


def test_generation_does_not_depend_on_the_terminal_or_the_day() -> None:
    """Run in another process with another width and date: the same text."""
    code = (
        "import runpy, sys; sys.argv = ['g']; "
        f"g = runpy.run_path({str(MAN / 'generate.py')!r}); "
        "sys.stdout.write(g['pages']()['tlsrpt-reporter.1'])"
    )
    env = {"COLUMNS": "200", "SOURCE_DATE_EPOCH": "0", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
        cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == (MAN / "tlsrpt-reporter.1").read_text()


def test_every_command_and_the_inspect_options_are_in_the_page() -> None:
    text = (MAN / "tlsrpt-reporter.1").read_text().replace("\\-", "-")  # roff escapes "-"
    for command in ("export", "replay", "ingest-log", "build", "send", "run", "status",
                    "check-config", "check-record", "inspect", "demo"):  # fmt: skip
        assert f".SH COMMAND \\fI\\,'tlsrpt-reporter {command}'" in text, command
    assert "--dkim-key" in text and "--require-dkim" in text
    assert ".SH EXIT STATUS" in text
