"""The destinations a report would have gone to, had ``reporter.redirect`` not sent it to the
operator: its delivery rows left ``skipped`` with the redirect's note (``deliver.redirect``).
"""

from __future__ import annotations

from tlsrpt_reporter.store.state_db import StateDb

# Asked before every attempt, so by the primary key alone: with "state = 'skipped'" in the
# WHERE clause SQLite preferred the (state, next_attempt) index and walked every skipped
# delivery of every day for each attempt (quadratic in the reports, benchmarks/deliver.py).
# A report has a few rows; the rest is sorted out here.
DELIVERIES_OF_REPORT = (
    "SELECT destination, state, detail FROM delivery WHERE report = ? ORDER BY rowid"
)


def skipped_with_note(conn: StateDb, report_id: int, note_prefix: str) -> list[str]:
    """The destinations of report ``report_id`` skipped with a detail starting with
    ``note_prefix``, in the order they were stored (the record's)."""
    rows = conn.execute(DELIVERIES_OF_REPORT, (report_id,))
    return [
        str(destination)
        for destination, state, detail in rows
        if state == "skipped" and str(detail).startswith(note_prefix)
    ]
