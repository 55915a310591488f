"""``--version`` of both commands: the installed distribution's version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

DISTRIBUTION = "tlsrpt-rfc8460-reporter"


@pytest.mark.parametrize(
    ("module", "prog"),
    [("tlsrpt_reporter.cli", "tlsrpt-reporter"), ("tlsrpt_collectd.daemon", "tlsrpt-collectd")],
)
def test_version_prints_the_distributions_version_and_exits_0(module: str, prog: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{prog} {version(DISTRIBUTION)}\n"
