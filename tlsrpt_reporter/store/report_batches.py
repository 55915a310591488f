"""Storing a day's built reports in batches: the reports of several batches, and those of them
set aside, in one transaction; the ``built_day`` row once the last batch is in.

A day of a large provider holds hundreds of thousands of reports: holding them all until one
transaction stores them costs memory in proportion to the day. Batches keep it bounded, and
each committed batch is kept: a day whose build stopped half-way (a crash, a full disk) has no
``built_day`` row, so the next pass builds it again and stores only the domains not stored yet
(:func:`stored_domains`). The tables are ``store.reports``' (its docstring holds the schema).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.store.reports import insert_report
from tlsrpt_reporter.store.state_db import StateDb, dialect
from tlsrpt_reporter.store.tx import transaction

_INSERT_SET_ASIDE = (
    "INSERT INTO set_aside (day, domain, reason, version, at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (day, domain) DO UPDATE SET reason = excluded.reason,"
    " version = excluded.version, at = excluded.at, retries = 0"
)


# While a day's batches are stored, the WAL is copied back into the database every 64 MiB
# (16384 pages of 4 KiB) rather than SQLite's 4 MiB: a batch changes pages all over the
# Report-ID index (the IDs are hashes), and fewer checkpoints copy each such page fewer times.
# Measured at 100,000 reports: the store stage a third shorter.
_DAY_CHECKPOINT_PAGES = 16384
# ... and the page cache is 32 MiB instead of 2: a transaction of 5,000 reports (below) dirties
# more pages than 2 MiB hold, and SQLite then writes them to the WAL before the commit too.
# Measured, storing 100,000 reports alone: 6.9-8.0 s instead of 8.6-8.7 s (the whole build's
# peak RSS stays under 400 MiB).
_DAY_CACHE_KIB = 32 * 1024

# A transaction holds several batches. Each commit writes every index page its reports touched
# to the WAL (and syncs it), and the Report-IDs (hashes) and send times (random) touch pages all
# over their indexes: the larger the day, the more pages each commit rewrites. Measured, storing
# 100,000 reports alone: 9.3-15.0 s with a commit per 500 reports, 6.6-7.2 s per 5,000. The time
# bound keeps the write lock from being held longer than other writers of the state database
# wait for it (their busy timeout is 10 s).
COMMIT_REPORTS = 5000
COMMIT_SECONDS = 5.0


class DayWriter:
    """Stores one day's batches: :meth:`store` each batch, :meth:`finish` once the last is in.

    Batches are committed together, every :data:`COMMIT_REPORTS` reports or
    :data:`COMMIT_SECONDS` seconds, whichever comes first; what was committed stays if the build
    stops (see :func:`stored_domains`), what was not is rolled back by :func:`day_writes`.
    """

    def __init__(
        self,
        conn: StateDb,
        day: str,
        now: float,
        *,
        commit_reports: int = COMMIT_REPORTS,
        commit_seconds: float = COMMIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conn = conn
        self._day = day
        self._now = now
        self._commit_reports = commit_reports
        self._commit_seconds = commit_seconds
        self._clock = clock
        self._open = False
        self._pending = 0  # reports in the open transaction
        self._opened_at = 0.0

    def store(
        self, reports: Sequence[dict[str, Any]], set_aside: Sequence[tuple[str, str, str]]
    ) -> None:
        """Store one batch of built reports (pending) and the (domain, reason, version) of
        those set aside; commits when the transaction holds enough."""
        if not self._open:
            self._conn.execute("BEGIN IMMEDIATE")
            self._open = True
            self._opened_at = self._clock()
        for r in reports:
            insert_report(self._conn, self._day, r)  # the one definition of a stored report
        self._conn.executemany(
            _INSERT_SET_ASIDE,
            [
                (self._day, domain, reason, version, self._now)
                for domain, reason, version in set_aside
            ],
        )
        self._pending += len(reports) + len(set_aside)
        if (
            self._pending >= self._commit_reports
            or self._clock() - self._opened_at >= self._commit_seconds
        ):
            self.commit()

    def commit(self) -> None:
        """Commit what was stored so far (nothing when nothing is open)."""
        if self._open:
            self._conn.execute("COMMIT")
            self._open = False
            self._pending = 0

    def rollback(self) -> None:
        """Give up what was stored since the last commit."""
        if self._open:
            self._open = False
            self._pending = 0
            # SQLite may have rolled back already (a full disk, an I/O error).
            with contextlib.suppress(sqlite3.Error, StoreError):
                self._conn.execute("ROLLBACK")

    def finish(self, note: str = "") -> int:
        """Commit the last batches and mark the day built; returns the day's stored reports."""
        self.commit()
        return finish_day(self._conn, self._day, self._now, note)


@contextlib.contextmanager
def day_writes(
    conn: StateDb, day: str, now: float, *, clock: Callable[[], float] = time.monotonic
) -> Iterator[DayWriter]:
    """``with day_writes(conn, day, now) as writer:`` around storing a day's batches: fewer,
    larger checkpoints and commits; what was not committed is rolled back when the block
    raises; the WAL file is truncated afterwards so that its disk space is given back.
    ``clock`` times the commits' time bound (see :class:`DayWriter`)."""
    sqlite = dialect(conn) == "sqlite"  # PostgreSQL has no WAL to tune per connection
    if sqlite:
        (before,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        (cache,) = conn.execute("PRAGMA cache_size").fetchone()
        conn.execute(f"PRAGMA wal_autocheckpoint = {_DAY_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA cache_size = -{_DAY_CACHE_KIB}")
    writer = DayWriter(conn, day, now, clock=clock)
    try:
        yield writer
        writer.commit()
    except BaseException:
        writer.rollback()
        raise
    finally:
        if sqlite:
            conn.execute(f"PRAGMA wal_autocheckpoint = {int(before)}")
            conn.execute(f"PRAGMA cache_size = {int(cache)}")
            # A reader may hold the WAL (status): then it is copied back at a later commit.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def stored_domains(conn: StateDb, day: str) -> set[str]:
    """The domains of ``day`` that have a stored report or are set aside: what an earlier,
    unfinished build of the day committed (empty for a day never started)."""
    # Both lookups use the (day, domain) key's index: no table scan.
    rows = conn.execute(
        "SELECT domain FROM report WHERE day = ? UNION SELECT domain FROM set_aside WHERE day = ?",
        (day, day),
    )
    return {domain for (domain,) in rows}


def finish_day(conn: StateDb, day: str, now: float, note: str = "") -> int:
    """Mark ``day`` built, with the number of its stored reports (of every batch, also those
    committed by an unfinished earlier build); returns that number."""
    with transaction(conn):
        (count,) = conn.execute("SELECT count(*) FROM report WHERE day = ?", (day,)).fetchone()
        conn.execute(
            "INSERT INTO built_day (day, built_at, reports, note) VALUES (?, ?, ?, ?)",
            (day, now, count, note),
        )
    return int(count)
