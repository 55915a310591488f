"""A report that cannot be built is set aside; every other report of the day goes out (issue:
one input must not stop reporting). Real collector and state databases, the real CLI, and the
site's real SMTP, HTTPS and DNS servers."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

from support.lines import ME, line
from support.site import DAY, Site

from tlsrpt_reporter import __version__
from tlsrpt_reporter.cli import commands
from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.report.sources import DayData
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store import set_aside
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode
from tlsrpt_reporter.wire.encode import datagram

AFTER_DAY = timing.day_end(DAY) + 3600


def _collect_bad_session(collector_db: Path) -> None:
    """A session whose stored failure detail no report can carry: a result type that is none of
    RFC 8460's, as a database written by some other program may hold (the gate at intake keeps
    this collector from storing one)."""
    detail = {"c": 204, "s": "192.0.2.1"}
    policy = {"policy-type": 9, "failure-details": [detail], "t": 1, "f": 1}
    raw = datagram("bad.example", [policy], "v=TLSRPTv1; rua=mailto:a@b.example")
    agg = Aggregate()
    agg.add(DAY, 1_772_330_000.0, decode(raw))
    conn = store.connect(collector_db)
    store.write(conn, store.build_batch(agg))
    conn.close()
    raw_db = sqlite3.connect(collector_db)
    raw_db.execute(
        "UPDATE failure_count SET result_type = 'mystery' WHERE policy_key IN"
        " (SELECT policy_key FROM policy_count WHERE domain = 'bad.example')"
    )
    raw_db.commit()
    raw_db.close()


def test_build_reports_sets_aside_the_report_that_cannot_be_built_and_builds_the_rest() -> None:
    cfg = load_config(None).reporter
    cfg = cfg.__class__(
        **{**cfg.__dict__, "organization_name": ME.organization_name,
           "contact_info": ME.contact_info}
    )  # fmt: skip
    bad = line("bad.example", failed=1, details=[{"result-type": "mystery",
                                                   "failed-session-count": 1}])  # fmt: skip
    data = DayData(lines=[line("a.example"), bad, line("c.example")])
    rows, result = schedule.build_reports(cfg, DAY, data, AFTER_DAY, instance="a1")
    assert [row["domain"] for row in rows] == ["a.example", "c.example"]
    assert [domain for domain, _ in result.set_aside] == ["bad.example"]
    assert "mystery" in result.set_aside[0][1]


def _state(site: Site) -> sqlite3.Connection:
    return state.connect(site.reporter_db)


def test_a_day_with_an_unbuildable_report_is_built_and_delivered_all_the_same(site: Site) -> None:
    _collect_bad_session(site.collector_db)
    sent = site.cli("send", "--now")
    # Every other report went out; send says what was set aside and exits non-zero.
    assert sent.returncode == 1, sent.stderr
    assert "1 reports set aside" in sent.stderr and "bad.example on 2026-03-01" in sent.stderr
    assert any(b"mail.example" in m.data for m in site.smtp.messages)
    assert site.report_status()["mail.example"][0] == "delivered"
    assert "bad.example" not in site.report_status()
    status = json.loads(site.cli("status", "--json").stdout)
    aside = status[0]["set_aside"]
    assert [entry["domain"] for entry in aside] == ["bad.example"]
    assert "mystery" in aside[0]["reason"] and aside[0]["version"] == __version__
    text = site.cli("status").stdout
    assert "set aside, cannot be built: bad.example" in text
    metrics = site.cli("status", "--format", "prometheus").stdout
    assert "tlsrpt_reporter_reports_set_aside 1" in metrics


def test_retry_failed_builds_the_report_once_the_data_can_be_reported(site: Site) -> None:
    _collect_bad_session(site.collector_db)
    assert site.cli("send", "--now").returncode == 1
    still = site.cli("retry-failed", DAY)
    assert still.returncode == 1 and "still cannot be built" in still.stdout
    # The operator repairs the stored data; a retry then builds and stores the report.
    conn = sqlite3.connect(site.collector_db)
    conn.execute(
        "DELETE FROM failure_count WHERE policy_key IN"
        " (SELECT policy_key FROM policy_count WHERE domain = 'bad.example')"
    )
    conn.execute("DELETE FROM policy_count WHERE domain = 'bad.example'")
    conn.commit()
    conn.close()
    agg = Aggregate()
    agg.add(DAY, 1_772_330_000.0, decode(datagram("bad.example", [
        {"policy-type": 9, "t": 0, "f": 0}], "v=TLSRPTv1; rua=mailto:a@b.example")))  # fmt: skip
    db = store.connect(site.collector_db)
    store.write(db, store.build_batch(agg))
    db.close()
    retried = site.cli("retry-failed", "--all")
    assert retried.returncode == 0, retried.stderr
    assert "built 1 reports" in retried.stdout
    assert site.report_status()["bad.example"][0] == "pending"
    with _state(site) as conn:
        assert set_aside.listed(conn) == []


def test_retry_failed_wants_a_day_or_all(site: Site) -> None:
    assert site.cli("retry-failed").returncode == 2


def test_a_new_program_version_retries_what_an_old_one_set_aside_once(site: Site) -> None:
    _collect_bad_session(site.collector_db)
    assert site.cli("send", "--now").returncode == 1
    conn = _state(site)
    conn.execute("UPDATE set_aside SET version = '0.0.0-old'")
    cfg = commands.load(str(site.config))
    schedule.build_due(cfg, conn, AFTER_DAY, random.Random(1))
    (entry,) = set_aside.listed(conn)
    assert (entry.version, entry.retries) == (__version__, 1)
    schedule.build_due(cfg, conn, AFTER_DAY + 60, random.Random(1))
    assert set_aside.listed(conn)[0].retries == 1  # once by itself, not on every pass
    conn.close()


def test_one_destination_failing_in_an_unforeseen_way_stops_no_other(site: Site) -> None:
    cfg_all = load_config(str(site.config))
    cfg = commands.load(str(site.config))
    sender = commands._sender(cfg, cfg_all.dns)
    sender.clock = lambda: AFTER_DAY
    deliver = sender._deliver

    async def broken_https(row: state.ReportRow, destination: str, *more: Any) -> str:
        # A fault no test server can provoke: the transport itself raising something odd.
        if destination.startswith("https:"):
            raise RuntimeError("boom")
        return await deliver(row, destination, *more)

    sender._deliver = broken_https  # type: ignore[method-assign]
    conn = _state(site)
    schedule.build_due(cfg, conn, AFTER_DAY, random.Random(1))
    summary = asyncio.run(sender.send_due(conn, force=True))
    conn.close()
    assert summary.sent >= 1
    deliveries = site.deliveries()
    assert deliveries["mail.example"][0] == "sent"
    assert deliveries["web.example"][0] == "failed-retrying"
    with _state(site) as check:
        (error,) = check.execute(
            "SELECT last_error FROM delivery WHERE destination LIKE 'https:%'"
        ).fetchone()
    assert error == "unexpected RuntimeError: boom"
