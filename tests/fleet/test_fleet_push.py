"""``tlsrpt-reporter push``: idempotent (a repeated push changes no row, more sessions replace
the host's rows instead of adding to them), an idle day pushed as empty, PostgreSQL down is one
line and exit 1 with nothing local changed, and the next push after it brings everything."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from fleet_site import Fleet, collect, fleet_rows, local_rows, mta_config, push_role
from fleet_site import cli as fleet_cli

from tlsrpt_reporter import utc
from tlsrpt_reporter.wire.encode import datagram

# Two days ago: finished more than COMPLETE_AFTER ago whenever the test runs.
DAY = utc.day(time.time() - 2 * 86400)


def _sessions(domains: int, start: int = 0) -> list[tuple[bytes, float]]:
    out = []
    for i in range(start, start + domains):
        name = f"d{i % 7}.example"
        failed = i % 3 == 0
        detail = [{"c": 204, "h": f"mx.{name}", "s": "192.0.2.1"}] if failed else []
        policy = {"policy-type": 1, "policy-domain": name, "t": 0, "f": int(failed),
                  "failure-details": detail}  # fmt: skip
        raw = datagram(name, [policy], f"v=TLSRPTv1; rua=mailto:r@{name}")
        out.append((raw, time.time() - 2 * 86400 + i))
    return out


def _setup(fleet: Fleet, tmp_path: Path, host: str = "mta1") -> tuple[Path, Path]:
    db = tmp_path / f"{host}.sqlite"
    collect(db, DAY, _sessions(30))
    return db, mta_config(tmp_path / f"{host}.toml", db, fleet.conninfo(push_role(host)), host)


def test_a_repeated_push_changes_no_row_and_more_sessions_replace_the_hosts_rows(
    fleet: Fleet, tmp_path: Path
) -> None:
    db, config = _setup(fleet, tmp_path)
    first = fleet_cli("push", config=config)
    assert first.returncode == 0, first.stderr
    assert f"{DAY}  written" in first.stdout
    assert fleet_rows(fleet, "mta1", DAY) == local_rows(db, DAY)
    after_first = fleet.dump()

    again = fleet_cli("push", config=config)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("unchanged") == 4  # today and three days back
    assert fleet.dump() == after_first  # pushed_at included: not even touched

    collect(db, DAY, _sessions(30, start=5))  # more sessions, partly on the same keys
    third = fleet_cli("push", config=config)
    assert third.returncode == 0, third.stderr
    assert f"{DAY}  written" in third.stdout
    # The host's rows are the collector's rows: replaced, nothing added twice.
    assert fleet_rows(fleet, "mta1", DAY) == local_rows(db, DAY)
    local_sessions = sum(r[7] + r[8] for r in local_rows(db, DAY)["fleet_policy"])
    ((fleet_sessions,),) = fleet.query(
        "SELECT sum(successful_session_count + failed_session_count) FROM fleet_policy"
        f" WHERE day = '{DAY}'"
    )
    assert fleet_sessions == local_sessions == 60


def test_every_day_of_the_window_is_pushed_even_empty_and_marked_complete_once_ended(
    fleet: Fleet, tmp_path: Path
) -> None:
    _db, config = _setup(fleet, tmp_path)
    assert fleet_cli("push", "--days", "2", config=config).returncode == 0
    pushed = dict(fleet.query("SELECT day::text, complete FROM pushed_day WHERE host = 'mta1'"))
    today, yesterday = utc.day(time.time()), utc.day(time.time() - 86400)
    # An idle day is a day the host says it had nothing: not the same as a silent host.
    assert set(pushed) == {DAY, yesterday, today}
    assert pushed[DAY] is True and pushed[today] is False


def test_postgresql_down_is_one_line_and_exit_1_and_the_next_push_brings_everything(
    fleet: Fleet, tmp_path: Path
) -> None:
    db, config = _setup(fleet, tmp_path)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    fleet.cluster.stop()
    try:
        down = fleet_cli("push", config=config)
    finally:
        fleet.cluster.start()
    assert down.returncode == 1
    (line,) = down.stderr.splitlines()
    assert line.startswith("tlsrpt-reporter: cannot connect to PostgreSQL")
    assert str(fleet.cluster.sockets) in line  # the server, by where it was asked for
    assert "No such file or directory" in line  # libpq's own words
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert fleet.query("SELECT count(*) FROM pushed_day") == [(0,)]

    collect(db, DAY, _sessions(10, start=100))  # the collector went on meanwhile
    back = fleet_cli("push", config=config)
    assert back.returncode == 0, back.stderr
    assert fleet_rows(fleet, "mta1", DAY) == local_rows(db, DAY)


def test_days_the_collector_no_longer_keeps_leave_the_fleet_tables(
    fleet: Fleet, tmp_path: Path
) -> None:
    db, config = _setup(fleet, tmp_path)
    old = utc.day(time.time() - 20 * 86400)
    fleet.cluster.sql(
        f"INSERT INTO fleet_counter VALUES ('{old}', 'mta1', 'sessions', 5);"
        f"INSERT INTO fleet_counter VALUES ('{old}', 'mta2', 'sessions', 5)",
        fleet.dbname, "tlsrpt_reporter",
    )  # fmt: skip
    assert fleet_cli("push", config=config).returncode == 0
    # Only this host's: mta2 prunes its own when it pushes.
    assert fleet.query(f"SELECT host FROM fleet_counter WHERE day = '{old}'") == [("mta2",)]
    assert local_rows(db, DAY)["fleet_policy"]
