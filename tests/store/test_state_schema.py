"""The reporter's state database: the instance id in ``meta`` (store.instance), each mail
destination's Message-ID and Date (migrated from version 3), an index for the daily cap."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from support.state_versions import undo_version_6

from tlsrpt_reporter.store import instance, redirected
from tlsrpt_reporter.store import reports as state


def _report(domain: str, report_id: str) -> dict[str, Any]:
    return {"domain": domain, "report_id": report_id, "message_id": f"tlsrpt.{report_id}",
            "date": "Sun, 01 Mar 2026 01:00:00 +0000", "filename": "f", "gzip": b"",
            "summary": "", "record": "", "send_at": 0.0}  # fmt: skip


def test_the_instance_id_is_made_once_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "reporter.sqlite"
    made: list[str] = []

    def make() -> str:
        made.append("a1b2")
        return "a1b2"

    conn = state.connect(db)
    assert instance.instance_id(conn, make) == "a1b2"
    conn.close()
    conn = state.connect(db)
    assert instance.instance_id(conn, make) == "a1b2"
    conn.close()
    assert made == ["a1b2"]
    assert instance.stored_instance_id(db) == "a1b2"


def test_reading_the_stored_id_creates_and_migrates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "reporter.sqlite"
    assert instance.stored_instance_id(db) is None
    assert not db.exists()
    state.connect(db).close()
    assert instance.stored_instance_id(db) is None, "none made yet"
    _back_to_version_3(db)
    assert instance.stored_instance_id(db) is None, "no meta table in version 3"
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 3
    raw.close()


def _back_to_version_3(db: Path) -> None:
    raw = sqlite3.connect(db)
    raw.execute("DROP TABLE meta")
    raw.execute("ALTER TABLE delivery DROP COLUMN message_id")
    raw.execute("ALTER TABLE delivery DROP COLUMN date")
    undo_version_6(raw)
    raw.execute("PRAGMA user_version = 3")
    raw.commit()
    raw.close()


def test_version_3_is_migrated_and_mails_already_tried_keep_their_message_id_and_date(
    tmp_path: Path,
) -> None:
    db = tmp_path / "reporter.sqlite"
    state.connect(db).close()
    _back_to_version_3(db)
    raw = sqlite3.connect(db, isolation_level=None)
    state.insert_day(raw, "2026-03-01", 1000.0, [_report("a.example", "r1@example.net")])
    raw.executemany(
        "INSERT INTO delivery (report, destination, state, attempts, next_attempt)"
        " VALUES (1, ?, 'failed-retrying', ?, 0)",
        [("mailto:tried@a.example", 2), ("mailto:new@a.example", 0), ("https://a.example/r", 1)],
    )
    raw.close()
    conn = state.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == state.SCHEMA_VERSION
    rows = {d.destination: (d.message_id, d.date) for d in state.due_deliveries(conn, 0, True)}
    # What version 3 sent with stays, so that retry is byte-identical; the rest is set on the
    # first attempt (deliver.sender).
    assert rows == {
        "mailto:tried@a.example": ("tlsrpt.r1@example.net", "Sun, 01 Mar 2026 01:00:00 +0000"),
        "mailto:new@a.example": ("", ""),
        "https://a.example/r": ("", ""),
    }
    assert instance.instance_id(conn, lambda: "c3") == "c3"
    conn.close()


def _plan(conn: sqlite3.Connection) -> str:
    """How SQLite runs the daily cap's count (store.reports.sent_to_destination)."""
    rows = conn.execute(
        f"EXPLAIN QUERY PLAN {state.SENT_TO_DESTINATION}", ("2026-03-01", "mailto:t@a.example")
    ).fetchall()
    return " | ".join(str(row[-1]) for row in rows)


def test_the_daily_cap_count_looks_destinations_up_by_index_also_after_migrating(
    tmp_path: Path,
) -> None:
    """Counting one destination's deliveries runs for every rua of every report: a scan of the
    whole table each time made resolving a 100k-report day quadratic (benchmarks/deliver.py)."""
    fresh = state.connect(tmp_path / "fresh.sqlite")
    assert "delivery_destination" in _plan(fresh)
    fresh.close()
    db = tmp_path / "old.sqlite"
    state.connect(db).close()
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("DROP INDEX delivery_destination")
    undo_version_6(raw)
    raw.execute("PRAGMA user_version = 5")
    assert "delivery_destination" not in _plan(raw)
    raw.close()
    migrated = state.connect(db)
    assert migrated.execute("PRAGMA user_version").fetchone()[0] == state.SCHEMA_VERSION
    assert "delivery_destination" in _plan(migrated)
    state.insert_day(migrated, "2026-03-01", 1000.0, [_report("a.example", "r1@example.net")])
    migrated.execute(
        "INSERT INTO delivery (report, destination, state, attempts, next_attempt)"
        " VALUES (1, 'mailto:t@a.example', 'sent', 1, 0)"
    )
    assert state.sent_to_destination(migrated, "2026-03-01", "mailto:t@a.example") == 1
    migrated.close()


def test_the_redirect_origins_asked_before_every_attempt_come_by_the_primary_key(
    tmp_path: Path,
) -> None:
    """With ``state = 'skipped'`` in its WHERE clause SQLite walked the (state, next_attempt)
    index, every skipped delivery of every day, before each attempt (benchmarks/deliver.py)."""
    conn = state.connect(tmp_path / "reporter.sqlite")
    rows = conn.execute(f"EXPLAIN QUERY PLAN {redirected.DELIVERIES_OF_REPORT}", (1,)).fetchall()
    plan = " | ".join(str(row[-1]) for row in rows)
    assert "sqlite_autoindex_delivery_1 (report=?)" in plan
    assert "delivery_due" not in plan
    state.insert_day(conn, "2026-03-01", 1000.0, [_report("a.example", "r1@example.net")])
    rows = [
        ("mailto:a@a.example", "skipped", "redirected to dir:/x"),
        ("mailto:b@a.example", "skipped", "other"),
        ("mailto:c@a.example", "pending", "redirected to no"),
    ]
    state.add_destinations(conn, 1, rows, 0.0)
    assert redirected.skipped_with_note(conn, 1, "redirected to ") == ["mailto:a@a.example"]
    conn.close()
