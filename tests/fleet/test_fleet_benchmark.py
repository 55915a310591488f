"""benchmarks/fleet.py still runs: both parts at a tiny size, in a process of its own (it
starts its own throwaway cluster), every one of its checks passing. Its figures are the
benchmark's to print, not asserted here."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.paths import ROOT


@pytest.mark.slow
def test_the_fleet_benchmark_runs_both_parts_at_a_tiny_size_with_its_checks_passing() -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "fleet.py"), "--hosts", "2",
           "--domains", "100", "--report-domains", "40"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "CHECK FAILED" not in out and out.rstrip().endswith("checks passed")
    # The push part pushed twice (the second must find every day unchanged: checked by the
    # benchmark), and the reads of the day from PostgreSQL and SQLite agree.
    assert "first push:" in out and "again, unchanged:" in out
    assert "the same lines from both" in out
    # Every round of reporters ran (in each, exactly one built: a failed check otherwise).
    assert "two at once, PostgreSQL: 2 x send --now" in out
    assert "two, the second after the build: 2 x send --now" in out
    assert "one, SQLite: 1 x send --now" in out
