"""The reporter and the hosts of a fleet: a silent expected host postpones a finished day up
to ``source_deadline``, then the day is built with what arrived and the host is named (log,
the day's note, ``status``); a push made before the day ended does not count as the day; a
host that pushes without being expected is used and logged once."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest
from fleet_site import HOSTS, Fleet, collect, push_role, reporter_config
from fleet_site import cli as fleet_cli

from tlsrpt_reporter.config import load as config
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import fleet_push
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.wire.encode import datagram

DAY = "2026-03-01"
END = timing.day_end(DAY)
LOGGER = "tlsrpt-reporter"


def _push(fleet: Fleet, tmp_path: Path, host: str, now: float, domain: str) -> None:
    db = tmp_path / f"{host}.sqlite"
    policy = {"policy-type": 9, "policy-domain": domain, "t": 2, "f": 0}
    collect(db, DAY, [(datagram(domain, [policy], f"v=TLSRPTv1; rua=mailto:r@{domain}"),
                       END - 3600)])  # fmt: skip
    asyncio.run(fleet_push.push(fleet.conninfo(push_role(host)), host, db, days=1,
                                retention_days=14, now=now))  # fmt: skip


def test_a_silent_host_postpones_the_day_until_the_deadline_then_is_named_in_status(
    fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for host in ("mta1", "mta2"):
        _push(fleet, tmp_path, host, END + 3600, f"{host}.example")
    path = reporter_config(tmp_path / "reporter.toml", [fleet.url()], tmp_path / "state.sqlite",
                           expected_hosts=list(HOSTS))  # fmt: skip
    cfg = config.load(path).reporter
    caplog.set_level(logging.INFO, logger=LOGGER)
    conn = state.connect(cfg.db)
    try:
        ready = END + cfg.grace + 60
        assert schedule.build_due(cfg, conn, ready, random.Random(1)) == []
        assert f"postponing {DAY}" in caplog.text
        assert f"host mta3 has not pushed {DAY}" in caplog.text
        assert not state.is_built(conn, DAY)

        late = END + cfg.grace + cfg.source_deadline + 60
        (built,) = schedule.build_due(cfg, conn, late, random.Random(1))
        assert built.reports == 2  # what arrived: mta1's and mta2's domains
        assert f"building {DAY} although sources failed" in caplog.text
    finally:
        conn.close()
    status = fleet_cli("status", config=path)
    assert status.returncode == 0, status.stderr
    assert f"built without: host mta3 has not pushed {DAY}" in status.stdout
    as_json = fleet_cli("status", "--json", config=path)
    assert f"host mta3 has not pushed {DAY}" in as_json.stdout


def test_a_push_made_before_the_day_ended_does_not_count_as_the_day(
    fleet: Fleet, tmp_path: Path
) -> None:
    _push(fleet, tmp_path, "mta1", END - 600, "early.example")
    source = config.parse({"reporter": {"sources": [fleet.url()], "expected_hosts": ["mta1"]}})
    data = sources.read_day(source.reporter.sources, DAY)
    assert data.failed_sources == [
        f"host mta1 has not pushed all of {DAY} (its last push was made before the day ended)"
    ]
    # The next push after the day's end (plus the margin) completes it.
    _push(fleet, tmp_path, "mta1", END + fleet_push.COMPLETE_AFTER, "early.example")
    assert sources.read_day(source.reporter.sources, DAY).failed_sources == []


def test_a_host_that_pushes_unexpected_is_used_and_logged_once(
    fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _push(fleet, tmp_path, "mta1", END + 3600, "one.example")
    _push(fleet, tmp_path, "mta3", END + 3600, "three.example")
    cfg = config.parse({"reporter": {"sources": [fleet.url()], "expected_hosts": ["mta1"]}})
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for _ in range(2):
        data = sources.read_day(cfg.reporter.sources, DAY)
        assert data.failed_sources == []
        assert {line["domain"] for line in data.lines} == {"one.example", "three.example"}
    warnings = [r.getMessage() for r in caplog.records if "not in reporter.expected_hosts" in
                r.getMessage()]  # fmt: skip
    assert len(warnings) == 1
    assert warnings[0].startswith("host mta3 pushes to")


def test_the_fleet_is_read_from_inside_a_running_event_loop_as_run_builds(
    fleet: Fleet, tmp_path: Path
) -> None:
    # `run` builds days synchronously between its asynchronous passes, inside its event loop.
    _push(fleet, tmp_path, "mta1", END + 3600, "loop.example")

    async def inside() -> tuple[list[str], sources.DayData]:
        return sources.days_with_data([fleet.url()]), sources.read_day([fleet.url()], DAY)

    days, data = asyncio.run(inside())
    assert DAY in days
    assert [line["domain"] for line in data.lines] == ["loop.example"]
