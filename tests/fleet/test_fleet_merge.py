"""Three MTA hosts, each with a third of a day's sessions, push to the fleet's PostgreSQL; the
reporter's ``build`` from it gives the reports a build from one collector that saw every
session gives. Real collector databases, a real cluster, the real command line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from fleet_site import HOSTS, Fleet, reporter_config, split_and_push
from fleet_site import cli as fleet_cli

from tlsrpt_reporter.demo.samplegen import sessions
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule import timing

DAY = "2026-03-01"
START = timing.day_end(DAY) - 86400
AFTER_DAY = timing.day_end(DAY) + 3600


def _sessions() -> list[tuple[bytes, float]]:
    """A day's sessions of the sample generator's mix (every policy type, DANE MX hosts,
    failure details), each seen at its own time so the record seen last differs by host."""
    return [(raw, START + 60 + i * 7.0) for i, raw in enumerate(sessions(11, 40, 1500))]


def _reports(directory: Path) -> list[dict[str, Any]]:
    """Every report ``build --out`` wrote, without what differs between two builds."""
    found = []
    for path in sorted(directory.glob("*.json.gz")):
        report = json.loads(gzip.decompress(path.read_bytes()))
        del report["report-id"]
        found.append(report)
    return sorted(found, key=lambda r: json.dumps(r, sort_keys=True))


def test_three_hosts_pushed_build_the_reports_of_one_collector_that_saw_everything(
    fleet: Fleet, tmp_path: Path
) -> None:
    pushed = split_and_push(fleet, tmp_path, DAY, _sessions(), AFTER_DAY)
    for done in pushed.values():
        assert [(d.day, d.outcome, d.complete) for d in done if d.day == DAY] == [
            (DAY, "written", True)
        ]
    config = reporter_config(tmp_path / "reporter.toml", [fleet.url()], tmp_path / "state.sqlite",
                             expected_hosts=list(HOSTS))  # fmt: skip

    from_fleet = fleet_cli("build", "--day", DAY, "--out", tmp_path / "fleet", config=config)
    assert from_fleet.returncode == 0, from_fleet.stderr
    assert "source unreadable" not in from_fleet.stderr
    single = fleet_cli("build", "--day", DAY, "--out", tmp_path / "single",
                       "--db", tmp_path / "all.sqlite", config=config)  # fmt: skip
    assert single.returncode == 0, single.stderr

    reports = _reports(tmp_path / "fleet")
    assert len(reports) > 30
    assert reports == _reports(tmp_path / "single")
    # Failures and several policy types made it through, not only plain successes.
    assert any(r["policies"][0]["summary"]["total-failure-session-count"] for r in reports)
    assert {p["policy"]["policy-type"] for r in reports for p in r["policies"]} >= {"sts", "tlsa"}


def test_the_fleet_source_reads_the_sums_and_the_record_seen_last_of_all_hosts(
    fleet: Fleet, tmp_path: Path
) -> None:
    split_and_push(fleet, tmp_path, DAY, _sessions(), AFTER_DAY)
    fleet_day = sources.read_day([fleet.url()], DAY)
    single = sources.read_day([str(tmp_path / "all.sqlite")], DAY)
    assert fleet_day.failed_sources == []
    assert fleet_day.records == single.records

    def key(line: dict[str, Any]) -> str:
        return json.dumps(line, sort_keys=True)

    assert sorted(fleet_day.lines, key=key) == sorted(single.lines, key=key)
