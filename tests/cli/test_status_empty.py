"""``status`` before the first build (cli.commands, cli.status_view): exit 0 in every format,
"nothing collected yet" or "nothing built yet", and when the next report goes out; the state
database is not created by looking. The real command on real files."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.site import session

from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode


def _config(tmp: Path) -> Path:
    config = tmp / "config.toml"
    config.write_text(
        f'[collectd]\ndb = "{tmp / "collectd.sqlite"}"\nsocket = "{tmp}/collectd.sock"\n'
        '[reporter]\norganization_name = "Example"\ncontact_info = "tlsrpt@example.net"\n'
        f'db = "{tmp / "reporter.sqlite"}"\ngrace = 7200\nspread = 14400\n'
    )
    return config


def _status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tlsrpt_reporter.cli", "status", *args, "--config", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _collect_today(tmp: Path) -> None:
    """One session collected today (a day that has not finished)."""
    agg = Aggregate()
    agg.add(time.strftime("%Y-%m-%d", time.gmtime()), time.time(), decode(session("a.example", "")))
    conn = store.connect(tmp / "collectd.sqlite")
    store.write(conn, store.build_batch(agg))
    conn.close()


def test_status_with_nothing_collected_says_so_and_when_the_next_report_goes_out(
    tmp_path: Path,
) -> None:
    shown = _status(_config(tmp_path))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(line.startswith("nothing collected yet") for line in lines), shown.stdout
    # Today's reports, at the end of the day plus grace (2 h), spread over 4 h.
    found = re.search(
        r"^next report: (\S+) 02:00 UTC to \1 06:00 UTC: the reports of (\S+), built when it "
        r"ends plus reporter.grace \(if sessions are collected\)$",
        shown.stdout,
        re.MULTILINE,
    )
    assert found, shown.stdout
    sent, built = (dt.date.fromisoformat(day) for day in found.groups())
    assert sent - built == dt.timedelta(days=1)
    assert shown.stderr == ""
    assert not (tmp_path / "reporter.sqlite").exists()  # looking creates nothing


def test_status_with_sessions_collected_but_nothing_built_says_what_was_collected(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    _collect_today(tmp_path)
    shown = _status(config)
    assert shown.returncode == 0, shown.stderr
    assert "nothing built yet; sessions collected on 1 day, " in shown.stdout
    assert "next report: " in shown.stdout and "(if sessions are collected)" not in shown.stdout


@pytest.mark.parametrize("form", [("--json",), ("--format", "json")])
def test_status_json_before_the_first_build_is_an_empty_list(
    tmp_path: Path, form: tuple[str, ...]
) -> None:
    shown = _status(_config(tmp_path), *form)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == []


def test_status_metrics_before_the_first_build_are_zeros_with_every_label(
    tmp_path: Path,
) -> None:
    shown = _status(_config(tmp_path), "--format", "prometheus")
    assert shown.returncode == 0, shown.stderr
    lines = [line.rsplit(" ", 1) for line in shown.stdout.splitlines() if line[:1] != "#"]
    samples = {series: float(value) for series, value in lines}
    assert samples["tlsrpt_reporter_days_built"] == 0
    assert samples["tlsrpt_reporter_reports_built"] == 0
    assert samples['tlsrpt_reporter_reports{status="given-up"}'] == 0
    assert samples['tlsrpt_reporter_own_problems{kind="dns"}'] == 0
    assert samples['tlsrpt_reporter_own_problems{kind="relay"}'] == 0
    assert samples["tlsrpt_reporter_last_build_timestamp_seconds"] == 0
    assert samples["tlsrpt_reporter_day_sessions"] == 0
    dane = 'tlsrpt_reporter_day_result_type_failed_sessions{result_type="dane-required"}'
    assert samples[dane] == 0
    assert not (tmp_path / "reporter.sqlite").exists()
