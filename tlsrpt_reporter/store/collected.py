"""Writing and reading the collector database's aggregates: the flush's counter upserts
(:func:`build_batch`, :func:`write`) and what the reporter and ``export`` read (:func:`iter_day`,
:func:`day_counters`, :func:`records_last_seen`, :func:`days`).

The schema, its migrations and opening the database are ``collected_schema``'s, the row keys,
upserts and batches ``collected_rows``' (both re-exported here: ``collected.connect`` opens the
database); the daemon's asynchronous writes and retention
are ``collected_async``'s; the log follower's positions are ``ingest_position``'s.

Writers add to counters with upserts inside one transaction per flush, so a crash loses at most
the flush that was in flight and never leaves half of one. This module does no scheduling and
knows nothing of sockets.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.store.collected_rows import (
    UPSERT_COUNTER,
    UPSERT_DETAIL,
    UPSERT_POLICY,
    Rows,
    Statement,
    WriteBatch,
    build_batch,
    detail_key,
    execute_batch,
    policy_key,
    stored_lines,
)
from tlsrpt_reporter.store.collected_schema import SCHEMA_VERSION, connect, explain, migrate
from tlsrpt_reporter.store.tx import transaction

__all__ = [
    # SCHEMA_VERSION, connect, explain and migrate are collected_schema's, and the keys, the
    # upserts and build_batch collected_rows', re-exported so that callers open, write and
    # read the database through this one module.
    "SCHEMA_VERSION",
    "UPSERT_COUNTER",
    "UPSERT_DETAIL",
    "UPSERT_POLICY",
    "Rows",
    "Statement",
    "WriteBatch",
    "build_batch",
    "connect",
    "day_counters",
    "days",
    "detail_key",
    "execute_batch",
    "explain",
    "iter_day",
    "migrate",
    "policy_key",
    "records_last_seen",
    "write",
]


def write(conn: sqlite3.Connection, batch: WriteBatch) -> None:
    """Apply a batch in one transaction (synchronous; the daemon does the same through
    ``collected_async.write``).

    Raises StoreError naming the file, the cause and the fix when SQLite refuses.
    """
    try:
        with transaction(conn):
            execute_batch(conn, batch)
    except sqlite3.Error as exc:
        raise _write_error(conn, exc) from None


def _write_error(conn: sqlite3.Connection, exc: sqlite3.Error) -> StoreError:
    path = _file_of(conn)
    return StoreError(f"cannot write to database {path}: {explain(path, exc)}")


def _file_of(conn: sqlite3.Connection) -> str:
    for _, name, filename in conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(filename)
    return "(unknown)"


def days(conn: sqlite3.Connection) -> list[str]:
    """Every day the database holds counters for (``YYYY-MM-DD``), in order."""
    rows = conn.execute("SELECT DISTINCT day FROM day_counter ORDER BY day")
    return [day for (day,) in rows]


def day_counters(conn: sqlite3.Connection, day: str) -> dict[str, int]:
    """The per-day counters of ``day``."""
    rows = conn.execute("SELECT name, value FROM day_counter WHERE day = ?", (day,))
    return {name: value for name, value in rows}


def records_last_seen(conn: sqlite3.Connection, day: str) -> dict[tuple[str, str], float]:
    """(domain, record) -> when the record was last seen on ``day``."""
    rows = conn.execute(
        "SELECT domain, record, max(last_seen) FROM policy_count WHERE day = ?"
        " GROUP BY domain, record",
        (day,),
    )
    return {(domain, record): seen for domain, record, seen in rows}


def iter_day(conn: sqlite3.Connection, day: str) -> Iterator[dict[str, Any]]:
    """Yield the day's aggregates in the ``export`` shape (README.md, ``export``), sorted."""
    for line, _first, _last in stored_lines(conn, day):
        yield line
