"""The ``ingest_position`` table of the collector database (``collected_schema``, version 2):
where ``ingest-log --follow`` stopped in each followed file, and the log adapter's state then.

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


def save_statement(path: str, fmt: str, position: IngestPosition, now: float) -> Statement:
    """The statement that saves ``position`` of ``path`` (read as log format ``fmt``) at Unix
    time ``now``, replacing the saved one: for a ``collected.WriteBatch``, so it commits with
    the counts it belongs to."""
    state = json.dumps(position.state)
    row = (path, fmt, position.device, position.inode, position.offset, state, now)
    return (_SAVE, [row])
