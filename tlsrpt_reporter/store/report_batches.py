"""Storing a day's built reports in batches: each batch of reports, and the reports of it set
aside, in one transaction; the ``built_day`` row once the last batch is in.

A day of a large provider holds hundreds of thousands of reports: holding them all until one
transaction stores them costs memory in proportion to the day. Batches keep it bounded, and
each committed batch is kept: a day whose build stopped half-way (a crash, a full disk) has no
``built_day`` row, so the next pass builds it again and stores only the domains not stored yet
(:func:`stored_domains`). The tables are ``store.reports``' (its docstring holds the schema).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from tlsrpt_reporter.store.reports import insert_report
from tlsrpt_reporter.store.tx import transaction

_INSERT_SET_ASIDE = (
    "INSERT OR REPLACE INTO set_aside (day, domain, reason, version, at) VALUES (?, ?, ?, ?, ?)"
)


# While a day's batches are stored, the WAL is copied back into the database every 64 MiB
# (16384 pages of 4 KiB) rather than SQLite's 4 MiB: a batch changes pages all over the
# Report-ID index (the IDs are hashes), and fewer checkpoints copy each such page fewer times.
# Measured at 100,000 reports: the store stage a third shorter.
_DAY_CHECKPOINT_PAGES = 16384


@contextlib.contextmanager
def day_writes(conn: sqlite3.Connection) -> Iterator[None]:
    """``with day_writes(conn):`` around storing a day's batches: fewer, larger checkpoints,
    and the WAL file truncated afterwards so that its disk space is given back."""
    (before,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
    conn.execute(f"PRAGMA wal_autocheckpoint = {_DAY_CHECKPOINT_PAGES}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(before)}")
        # A reader may hold the WAL (status): then it is copied back at a later commit.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def stored_domains(conn: sqlite3.Connection, day: str) -> set[str]:
    """The domains of ``day`` that have a stored report or are set aside: what an earlier,
    unfinished build of the day committed (empty for a day never started)."""
    # Both lookups use the (day, domain) key's index: no table scan.
    rows = conn.execute(
        "SELECT domain FROM report WHERE day = ? UNION SELECT domain FROM set_aside WHERE day = ?",
        (day, day),
    )
    return {domain for (domain,) in rows}


def store_batch(
    conn: sqlite3.Connection,
    day: str,
    reports: Sequence[dict[str, Any]],
    set_aside: Sequence[tuple[str, str, str]],
    now: float,
) -> None:
    """Store one batch of ``day``'s built reports (pending) and the (domain, reason, version)
    of those set aside, in one transaction."""
    with transaction(conn):
        for r in reports:
            insert_report(conn, day, r)  # the one definition of a stored report
        conn.executemany(
            _INSERT_SET_ASIDE,
            [(day, domain, reason, version, now) for domain, reason, version in set_aside],
        )


def finish_day(conn: sqlite3.Connection, day: str, now: float, note: str = "") -> int:
    """Mark ``day`` built, with the number of its stored reports (of every batch, also those
    committed by an unfinished earlier build); returns that number."""
    with transaction(conn):
        (count,) = conn.execute("SELECT count(*) FROM report WHERE day = ?", (day,)).fetchone()
        conn.execute(
            "INSERT INTO built_day (day, built_at, reports, note) VALUES (?, ?, ?, ?)",
            (day, now, count, note),
        )
    return int(count)
