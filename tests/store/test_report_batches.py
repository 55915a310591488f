"""A day's batches share transactions (issue 15): a commit every so many reports or seconds,
what was committed kept and what was not rolled back when the build stops, the day marked built
only by :meth:`DayWriter.finish`. Real state databases, SQLite and PostgreSQL, read from a second
connection."""

from __future__ import annotations

from typing import Any

import pytest

from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store.report_batches import DayWriter, day_writes

DAY = "2026-03-01"
NOW = 1_772_500_000.0


def _rows(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {"domain": f"d{i:03d}.example", "report_id": f"2026.03.01.{i:03d}@bench.example",
         "message_id": f"m{i}@bench.example", "date": "Sun, 01 Mar 2026 00:00:00 +0000",
         "filename": f"f{i}.json.gz", "gzip": b"\x1f\x8b", "summary": "{}", "record": "",
         "send_at": NOW + i}
        for i in range(first, first + count)
    ]  # fmt: skip


def _seen(path: str) -> int:
    """Reports another connection sees: what is committed."""
    other = state.connect(path)
    try:
        (count,) = other.execute("SELECT count(*) FROM report").fetchone()
        return int(count)
    finally:
        other.close()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_batches_are_committed_together_once_they_hold_enough_reports(state_location: str) -> None:
    path = state_location
    conn = state.connect(path)
    writer = DayWriter(conn, DAY, NOW, commit_reports=6, commit_seconds=3600)
    writer.store(_rows(0, 2), [])
    writer.store(_rows(2, 2), [("d900.example", "why", "1.0")])
    assert _seen(path) == 0, "four reports and one set aside: below the commit size"
    writer.store(_rows(4, 2), [])
    assert _seen(path) == 6
    writer.store(_rows(6, 1), [])
    assert _seen(path) == 6
    assert writer.finish("a note") == 7
    assert _seen(path) == 7
    assert conn.execute("SELECT reports, note FROM built_day").fetchall() == [(7, "a note")]
    assert conn.execute("SELECT domain FROM set_aside").fetchall() == [("d900.example",)]


def test_a_transaction_open_for_longer_than_the_time_bound_is_committed(
    state_location: str,
) -> None:
    path = state_location
    conn = state.connect(path)
    clock = _Clock()
    writer = DayWriter(conn, DAY, NOW, commit_reports=1000, commit_seconds=3.0, clock=clock)
    writer.store(_rows(0, 1), [])
    clock.now = 2.9
    writer.store(_rows(1, 1), [])
    assert _seen(path) == 0
    clock.now = 3.0
    writer.store(_rows(2, 1), [])
    assert _seen(path) == 3, "the write lock is not held past the bound"
    clock.now = 5.0
    writer.store(_rows(3, 1), [])
    assert _seen(path) == 3, "the bound counts from the transaction's start"


def test_a_build_that_stops_keeps_the_committed_batches_and_rolls_back_the_rest(
    state_location: str,
) -> None:
    path = state_location
    conn = state.connect(path)
    with pytest.raises(RuntimeError), day_writes(conn, DAY, NOW) as writer:
        writer.store(_rows(0, 3), [])
        writer.commit()
        writer.store(_rows(3, 3), [])
        raise RuntimeError("the build failed half-way")
    assert _seen(path) == 3
    assert not conn.in_transaction, "the connection is usable again"
    assert conn.execute("SELECT count(*) FROM built_day").fetchone() == (0,)
    # The next build stores the rest on the same connection.
    with day_writes(conn, DAY, NOW) as writer:
        writer.store(_rows(3, 3), [])
        assert writer.finish() == 6


def test_leaving_the_block_commits_what_is_still_open(state_location: str) -> None:
    path = state_location
    conn = state.connect(path)
    with day_writes(conn, DAY, NOW) as writer:
        writer.store(_rows(0, 2), [])
    assert _seen(path) == 2
    assert not conn.in_transaction
