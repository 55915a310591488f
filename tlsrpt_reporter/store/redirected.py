"""The destinations a report would have gone to, had ``reporter.redirect`` not sent it to the
operator: its delivery rows left ``skipped`` with the redirect's note (``deliver.redirect``).
"""

from __future__ import annotations

import sqlite3


def skipped_with_note(conn: sqlite3.Connection, report_id: int, note_prefix: str) -> list[str]:
    """The destinations of report ``report_id`` skipped with a detail starting with
    ``note_prefix``, in the order they were stored (the record's)."""
    rows = conn.execute(
        "SELECT destination FROM delivery WHERE report = ? AND state = 'skipped'"
        " AND substr(detail, 1, length(?)) = ? ORDER BY rowid",
        (report_id, note_prefix, note_prefix),
    )
    return [str(row[0]) for row in rows]
