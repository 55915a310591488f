"""The ``ingest_position`` table of the collector database (``collected_schema``, version 2):
where ``ingest-log`` stopped in each file it read, and the log adapter's state then. A followed
file's row is keyed by its path; a file read once by ``content:`` and a hash of its first
bytes, which ``state`` also holds (with a hash of the bytes before the offset), so that the
file is known again when renamed, copied or compressed (``ingest.identity``).

A position is saved in the same transaction as the counts read up to it (:func:`save_statement`
goes into the flush's write batch), so that counts and position never disagree after a crash.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.store.collected import Statement

_SAVE = (
    "INSERT OR REPLACE INTO ingest_position"
    " (path, format, device, inode, offset, state, updated) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class IngestPosition:
    """Where reading a followed file stopped: the file (``device``, ``inode``), the byte
    ``offset`` just past the last line counted, and ``state`` (JSON-able: what the adapter
    and the year guess need to go on from there)."""

    device: int
    inode: int
    offset: int
    state: dict[str, Any]


def load(conn: sqlite3.Connection, path: str) -> IngestPosition | None:
    """The position saved for the followed file ``path`` (absolute), or None."""
    row = conn.execute(
        "SELECT device, inode, offset, state FROM ingest_position WHERE path = ?", (path,)
    ).fetchone()
    if row is None:
        return None
    return IngestPosition(int(row[0]), int(row[1]), int(row[2]), json.loads(row[3]))


@dataclass(frozen=True)
class SavedPosition:
    """One row: the key it is saved under (a followed file's absolute path, or ``content:``
    and the hash of a file's first bytes for a file read once), the log format it was read
    as, and the position."""

    key: str
    fmt: str
    position: IngestPosition


def load_all(conn: sqlite3.Connection) -> list[SavedPosition]:
    """Every saved position, for finding a file by its content (``ingest.identity``)."""
    rows = conn.execute(
        "SELECT path, format, device, inode, offset, state FROM ingest_position ORDER BY path"
    ).fetchall()
    return [
        SavedPosition(
            str(row[0]),
            str(row[1]),
            IngestPosition(int(row[2]), int(row[3]), int(row[4]), json.loads(row[5])),
        )
        for row in rows
    ]


def save_statement(path: str, fmt: str, position: IngestPosition, now: float) -> Statement:
    """The statement that saves ``position`` of ``path`` (read as log format ``fmt``) at Unix
    time ``now``, replacing the saved one: for a ``collected.WriteBatch``, so it commits with
    the counts it belongs to."""
    state = json.dumps(position.state)
    row = (path, fmt, position.device, position.inode, position.offset, state, now)
    return (_SAVE, [row])
