"""Resolving a pass's reports (deliver.destinations): stored in the order of the reports,
a batch per transaction, however the lookups (deliver.lookahead) finish; the daily cap per
destination counts what the pass stored before; one report's fault is undone and retried
alone. Against a real state database and a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rigs.dnsserver import DnsServer

from tlsrpt_reporter.config.schema import DnsSettings, ReporterConfig
from tlsrpt_reporter.deliver import destinations as finding
from tlsrpt_reporter.deliver.destinations import DestinationFinder
from tlsrpt_reporter.deliver.resolver import Resolver
from tlsrpt_reporter.store import reports as state

DAY = "2026-03-01"
SHARED = "mailto:tlsrpt@shared.example"


def _report(n: int, record: str = "") -> dict[str, Any]:
    return {"domain": f"d{n:02d}.example", "report_id": f"r{n}@example.net",
            "message_id": f"tlsrpt.r{n}@example.net", "date": "Sun, 01 Mar 2026 01:00:00 +0000",
            "filename": "f", "gzip": b"", "summary": "", "record": record,
            "send_at": float(n)}  # fmt: skip


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = state.connect(tmp_path / "reporter.sqlite")
    yield db
    db.close()


def _resolve(conn: sqlite3.Connection, cfg: ReporterConfig, resolver: Resolver) -> tuple[int, int]:
    finder = DestinationFinder(cfg, resolver, random.Random(1), time.time)
    rows = state.reports_to_resolve(conn, time.time(), True)
    return asyncio.run(finder.resolve_all(conn, rows))


def _states(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT report.domain, delivery.destination, delivery.state FROM delivery"
        " JOIN report ON report.id = delivery.report ORDER BY report.send_at, delivery.rowid"
    ).fetchall()


def test_the_daily_cap_gives_the_first_reports_in_order_and_gives_up_the_rest(
    conn: sqlite3.Connection,
) -> None:
    """Looked up side by side: the first three reports (by their send time) go to the shared
    rua, as one by one; the count includes those stored earlier in the same pass."""
    zone = {f"_smtp._tls.d{n:02d}.example": [("TXT", f'"v=TLSRPTv1; rua={SHARED}"')]
            for n in range(12)}  # fmt: skip
    state.insert_day(conn, DAY, 0.0, [_report(n) for n in range(12)])
    cfg = dataclasses.replace(ReporterConfig(), max_reports_per_destination=3)
    with DnsServer(zone) as dns:
        resolver = Resolver(DnsSettings(nameservers=("127.0.0.1",), port=dns.port, timeout=2))
        assert _resolve(conn, cfg, resolver) == (12, 0)
    got = _states(conn)
    assert [domain for domain, _, kind in got if kind == "pending"] == [
        "d00.example", "d01.example", "d02.example"
    ]  # fmt: skip
    assert [kind for _, _, kind in got[3:]] == ["given-up"] * 9
    assert state.sent_to_destination(conn, DAY, SHARED) == 3
    # The next pass reads the count from the database: a new report is given up too.
    state.insert_report(conn, DAY, _report(12, f"v=TLSRPTv1; rua={SHARED}"))
    assert _resolve(conn, cfg, resolver) == (1, 0)
    assert _states(conn)[-1] == ("d12.example", SHARED, "given-up")


def test_one_reports_fault_is_undone_and_retried_while_the_others_of_its_batch_are_stored(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = {n: f"v=TLSRPTv1; rua=mailto:t@d{n:02d}.example" for n in range(6)}
    state.insert_day(conn, DAY, 0.0, [_report(n, records[n]) for n in range(6)])
    real = state.refresh_report_status

    def refresh(db: sqlite3.Connection, report_id: int) -> str:
        if report_id == 3:  # after its deliveries were inserted: they must go again
            raise RuntimeError("a bug")
        return real(db, report_id)

    monkeypatch.setattr(state, "refresh_report_status", refresh)
    resolver = Resolver(DnsSettings(nameservers=("127.0.0.1",), port=9, timeout=1))
    assert _resolve(conn, ReporterConfig(), resolver) == (6, 0)
    stored = {domain for domain, _, _ in _states(conn)}
    assert stored == {f"d{n:02d}.example" for n in range(6)} - {"d02.example"}
    status, attempts, error = conn.execute(
        "SELECT status, attempts, last_error FROM report WHERE domain = 'd02.example'"
    ).fetchone()
    assert (status, attempts) == ("pending", 1)
    assert error == "unexpected RuntimeError: a bug"
    assert not conn.in_transaction


def test_lookups_run_side_by_side_and_stop_when_the_resolver_does_not_answer(
    conn: sqlite3.Connection,
) -> None:
    """A resolver that answered the first reports and then goes silent: as many lookups as
    were in flight time out, then no more are asked; the rest wait, with no attempt counted."""
    answers = {f"_smtp._tls.d{n:02d}.example": [("TXT", f'"v=TLSRPTv1; rua={SHARED}"')]
               for n in range(4)}  # fmt: skip
    state.insert_day(conn, DAY, 0.0, [_report(n) for n in range(60)])
    with DnsServer(answers, drop=[f"_smtp._tls.d{n:02d}.example" for n in range(4, 60)]) as dns:
        resolver = Resolver(DnsSettings(nameservers=("127.0.0.1",), port=dns.port, timeout=1))
        resolved, waiting = _resolve(conn, ReporterConfig(), resolver)
        asked = {q.name.removeprefix("_smtp._tls.") for q in dns.queries}
    assert resolver.unreachable
    # After four answers at least eight lookups were in flight (one at a time would have
    # asked three more); they timed out, and then none was asked.
    assert 4 + 8 <= resolved <= 4 + finding.LOOKUPS_AT_ONCE
    assert resolved + waiting == 60
    attempts = dict(conn.execute("SELECT domain, attempts FROM report").fetchall())
    assert {d for d, n in attempts.items() if n == 1} == asked - {
        f"d{n:02d}.example" for n in range(4)
    }
    assert sum(1 for n in attempts.values() if n == 0) == waiting + 4
