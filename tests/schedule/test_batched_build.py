"""A day is built and stored in batches (issue 15): exactly one report per domain with the
content a build of that domain alone gives, a report set aside in the middle of a batch costs
the batch nothing, a day whose build stopped between batches is finished without duplicates,
and no batch's reports are held once the next is built. Real collector and state databases."""

from __future__ import annotations

import gc
import random
import sqlite3
import weakref
from pathlib import Path
from typing import Any

from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.demo.samplegen import sessions
from tlsrpt_reporter.report import document as report
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.schedule.day_build import DayBuild
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store import set_aside
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode
from tlsrpt_reporter.wire.encode import datagram

DAY = "2026-03-01"
AFTER_DAY = timing.day_end(DAY) + 3600
SEEN = 1_772_330_000.0


def _collect(db: Path, domains: list[str], mixed: int = 0) -> None:
    """One session for each of ``domains`` and ``mixed`` sessions of the sample generator's
    skewed mix (every policy type, DANE MX hosts, failure details) into a collector database."""
    agg = Aggregate()
    for raw in sessions(7, max(len(domains) // 4, 1), mixed):
        agg.add(DAY, SEEN, decode(raw))
    for name in domains:
        policy = {"policy-type": 9, "t": 1, "f": 0}
        agg.add(DAY, SEEN, decode(datagram(name, [policy], f"v=TLSRPTv1; rua=mailto:r@{name}")))
    conn = store.connect(db)
    store.write(conn, store.build_batch(agg))
    conn.close()


def _collect_unreportable(db: Path, domain: str) -> None:
    """A session of ``domain`` whose stored failure detail no report can carry: a result type
    that is none of RFC 8460's, as a database written by some other program may hold."""
    detail = {"c": 204, "s": "192.0.2.1"}
    policy = {"policy-type": 9, "failure-details": [detail], "t": 1, "f": 1}
    agg = Aggregate()
    agg.add(DAY, SEEN, decode(datagram(domain, [policy], "v=TLSRPTv1; rua=mailto:a@b.example")))
    conn = store.connect(db)
    store.write(conn, store.build_batch(agg))
    conn.close()
    raw = sqlite3.connect(db)
    raw.execute(
        "UPDATE failure_count SET result_type = 'mystery' WHERE policy_key IN"
        " (SELECT policy_key FROM policy_count WHERE domain = ?)",
        (domain,),
    )
    raw.commit()
    raw.close()


def _config(db: Path) -> ReporterConfig:
    return ReporterConfig(
        organization_name="Org", contact_info="tlsrpt@example.net", sources=(str(db),)
    )


def _stored(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT domain, report_id, message_id, date, filename, gzip, summary, record, send_at,"
        " status FROM report WHERE day = ?",
        (DAY,),
    ).fetchall()
    stored = {row[0]: dict(zip(("report_id", "message_id", "date", "filename", "gzip",
                                "summary", "record", "send_at", "status"), row[1:], strict=True))
              for row in rows}  # fmt: skip
    assert len(stored) == len(rows), "one report per domain"
    return stored


def _record_seen_last(data: sources.DayData, domain: str) -> str:
    """The record a scan of every (domain, record) finds (the rule before the day index)."""
    seen = [(last, record) for (d, record), last in data.records.items() if d == domain and record]
    return max(seen)[1] if seen else ""


def test_build_due_stores_one_report_per_domain_as_built_for_that_domain_alone(
    tmp_path: Path,
) -> None:
    collector = tmp_path / "collector.sqlite"
    _collect(collector, [f"d{i:04d}.example" for i in range(400)], mixed=3000)
    cfg = _config(collector)
    conn = state.connect(tmp_path / "state.sqlite")
    (result,) = schedule.build_due(cfg, conn, AFTER_DAY, random.Random(1), batch_size=37)
    stored = _stored(conn)

    data = sources.read_day(cfg.sources, DAY)
    hosts = report.mx_host_lines(data.lines, DAY)
    recipients = set(report.domains_of(data.lines, DAY))
    assert hosts and recipients > {f"d{i:04d}.example" for i in range(400)}
    assert set(stored) == recipients | set(hosts)
    assert result.reports == len(stored) and result.host_reports == len(set(hosts) - recipients)
    assert result.set_aside == []
    identity = report.Identity(
        cfg.organization_name, cfg.contact_info, schedule.instance_for(cfg, conn)
    )
    for domain, row in stored.items():
        # Built from the whole day's lines, as report.build filters them: no index involved.
        own = [line for line in data.lines if line["domain"] == domain]
        alone = report.build(DAY, domain, own + hosts.get(domain, []), identity)
        record = _record_seen_last(data, domain) if domain in recipients else ""
        assert (row["gzip"], row["report_id"], row["filename"]) == (
            alone.gzip_bytes,
            alone.report_id,
            alone.filename,
        ), domain
        assert row["summary"] == report.summary_text(alone, identity)
        assert (row["record"], row["message_id"], row["status"]) == (
            record, f"tlsrpt.{alone.report_id}", "pending"
        )  # fmt: skip
    # Every report its own send time in the spread window after the day (RFC 8460 §4.1).
    times = [row["send_at"] for row in stored.values()]
    assert len(set(times)) == len(times)
    assert all(AFTER_DAY <= t < AFTER_DAY + cfg.spread for t in times)
    assert conn.execute("SELECT reports FROM built_day WHERE day = ?", (DAY,)).fetchone() == (
        len(stored),
    )


def test_a_report_set_aside_in_the_middle_of_a_batch_leaves_the_batch_stored(
    tmp_path: Path,
) -> None:
    collector = tmp_path / "collector.sqlite"
    good = [f"d{i:02d}.example" for i in range(30)]
    # "d15-bad.example" sorts between d14 and d15: the middle of the second batch of ten.
    _collect(collector, good)
    _collect_unreportable(collector, "d15-bad.example")
    cfg = _config(collector)
    conn = state.connect(tmp_path / "state.sqlite")
    (result,) = schedule.build_due(cfg, conn, AFTER_DAY, random.Random(1), batch_size=10)
    stored = _stored(conn)
    assert sorted(stored) == good
    (aside,) = set_aside.listed(conn, DAY)
    assert aside.domain == "d15-bad.example" and "mystery" in aside.reason
    assert result.set_aside == [(aside.domain, aside.reason)] and result.reports == 30
    assert conn.execute("SELECT reports FROM built_day").fetchall() == [(30,)]


def test_a_day_whose_build_stopped_between_batches_is_finished_without_duplicates(
    tmp_path: Path,
) -> None:
    collector = tmp_path / "collector.sqlite"
    _collect(collector, [f"d{i:03d}.example" for i in range(120)], mixed=500)
    cfg = _config(collector)
    conn = state.connect(tmp_path / "state.sqlite")
    schedule.build_due(cfg, conn, AFTER_DAY, random.Random(1), batch_size=25)
    complete = _stored(conn)
    # What a crash after the first batches leaves: those batches committed, no built_day.
    conn.execute("DELETE FROM report WHERE domain >= 'd060.example'")
    conn.execute("DELETE FROM built_day")
    kept = _stored(conn)
    assert 0 < len(kept) < len(complete)

    (again,) = schedule.build_due(cfg, conn, AFTER_DAY + 60, random.Random(2), batch_size=25)
    finished = _stored(conn)
    assert set(finished) == set(complete)
    assert again.reports == len(complete) - len(kept)
    for domain, row in kept.items():
        assert finished[domain] == row, "what was committed stays as it was"
    for domain in set(complete) - set(kept):
        assert finished[domain]["gzip"] == complete[domain]["gzip"]
    assert conn.execute("SELECT reports FROM built_day").fetchall() == [(len(complete),)]


def test_a_batch_of_built_reports_is_let_go_once_the_next_is_built(tmp_path: Path) -> None:
    collector = tmp_path / "collector.sqlite"
    _collect(collector, [f"d{i:02d}.example" for i in range(40)])
    cfg = _config(collector)
    data = sources.read_day(cfg.sources, DAY)
    build = DayBuild(cfg, DAY, data, AFTER_DAY, instance="a1")
    batches = build.batches(10)
    first = next(batches)
    assert len(first.rows) == 10
    built = [weakref.ref(row["built"]) for row in first.rows]
    del first
    rest = [len(batch.rows) for batch in batches]
    gc.collect()
    assert rest == [10, 10, 10]
    assert all(ref() is None for ref in built), "nothing keeps a stored batch's reports"
    assert build.result.reports == 40


def test_storing_a_day_gives_back_the_wal_and_its_settings(tmp_path: Path) -> None:
    collector = tmp_path / "collector.sqlite"
    _collect(collector, [f"d{i:03d}.example" for i in range(300)], mixed=300)
    conn = state.connect(tmp_path / "state.sqlite")
    (before,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
    (cache,) = conn.execute("PRAGMA cache_size").fetchone()
    schedule.build_due(_config(collector), conn, AFTER_DAY, random.Random(1), batch_size=50)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (before,)
    assert conn.execute("PRAGMA cache_size").fetchone() == (cache,)
    # Larger checkpoints while the day was stored; the WAL file is empty again afterwards.
    assert (tmp_path / "state.sqlite-wal").stat().st_size == 0
    assert len(_stored(conn)) >= 300
