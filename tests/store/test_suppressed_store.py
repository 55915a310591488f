"""The dead destinations' tables (store.suppressed) in a real state database: the migration that
adds them to a version 4 database, the few days kept per destination, and what a release makes
due again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support.state_versions import undo_version_6

from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store import suppressed

DEST = "mailto:tls@dead.example"


def test_a_version_4_database_gets_the_tables(tmp_path: Path) -> None:
    db = tmp_path / "reporter.sqlite"
    state.connect(db).close()
    raw = sqlite3.connect(db)
    raw.execute("DROP TABLE suppressed")
    raw.execute("DROP TABLE destination_day")
    undo_version_6(raw)
    raw.execute("PRAGMA user_version = 4")
    raw.commit()
    raw.close()
    conn = state.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == state.SCHEMA_VERSION >= 5
    suppressed.record_outcome(conn, DEST, "2026-03-01", delivered=False, error="550", keep=8)
    assert suppressed.history(conn, DEST) == [suppressed.DayOutcome("2026-03-01", 0, 1, "550")]
    conn.close()


def test_a_destination_keeps_its_last_days_and_a_success_drops_those_before(
    state_location: str,
) -> None:
    conn = state.connect(state_location)
    for day in range(1, 21):
        for _ in range(2):
            suppressed.record_outcome(conn, DEST, f"2026-03-{day:02d}", delivered=False,
                                      error=f"550 day {day}", keep=8)  # fmt: skip
    days = suppressed.history(conn, DEST)
    assert [d.day for d in days] == [f"2026-03-{d:02d}" for d in range(20, 12, -1)]
    assert days[0] == suppressed.DayOutcome("2026-03-20", 0, 2, "550 day 20")
    suppressed.record_outcome(conn, DEST, "2026-03-21", delivered=True, keep=8)
    assert suppressed.history(conn, DEST) == [suppressed.DayOutcome("2026-03-21", 1, 0, "")]
    conn.close()


def test_release_makes_held_deliveries_inside_retry_for_due_again(state_location: str) -> None:
    conn = state.connect(state_location)
    now = 1_800_000_000.0
    for n, send_at in enumerate((now - 3600, now - 3 * 86400), start=1):
        state.insert_report(conn, f"2026-03-0{n}", {
            "domain": "dead.example", "report_id": f"r{n}", "message_id": f"m{n}", "date": "",
            "filename": "f", "gzip": b"", "summary": "", "record": "", "send_at": send_at,
        })  # fmt: skip
        state.add_destinations(conn, n, [(DEST, "suppressed", "suppressed until ...")], now)
        state.refresh_report_status(conn, n)
    entry = suppressed.Suppressed(DEST, now - 60, now + 86400, "550 no such user", 7)
    suppressed.suppress(conn, entry)
    assert suppressed.listed(conn, now) == [entry]
    assert suppressed.active(conn, DEST, now + 86400) is None, "over at its end"
    assert suppressed.release(conn, [DEST], now, retry_for=86400) == 1
    assert suppressed.listed(conn, now) == []
    rows = conn.execute(
        "SELECT report.day, report.status, delivery.state FROM delivery"
        " JOIN report ON report.id = delivery.report ORDER BY report.day"
    ).fetchall()
    # The report of three days ago is past retry_for: it stays held back.
    assert rows == [("2026-03-01", "sending", "pending"),
                    ("2026-03-02", "no-destination", "suppressed")]  # fmt: skip
    conn.close()
