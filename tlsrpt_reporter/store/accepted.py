"""Recording a receiver's acceptance of a report: the one write that must not wait.

The sender calls :func:`record_accepted` the moment a server's final answer arrives (SMTP's
reply to the end of DATA, an HTTP 2xx status line), before it says QUIT or reads the answer's
body, so that a crash afterwards resends nothing (docs/operating.md, "Crashes and duplicates").
"""

from __future__ import annotations

from collections.abc import Callable

from tlsrpt_reporter.store.reports import refresh_report_status
from tlsrpt_reporter.store.state_db import StateDb
from tlsrpt_reporter.store.tx import transaction


def record_accepted(
    conn: StateDb,
    report_id: int,
    destination: str,
    at: float,
    detail: str,
    *,
    also: Callable[[], None] | None = None,
) -> None:
    """Mark the delivery of report ``report_id`` to ``destination`` ``sent`` at ``at`` with
    ``detail`` (the answer), and refresh the report's status: one transaction of their own,
    committed when this returns. ``also`` makes more writes of the same moment on ``conn``
    inside that transaction (the destination's count of the day, ``deliver.suppression``):
    every commit waits for the disk, and this one is made for every delivery."""
    with transaction(conn):
        conn.execute(
            "UPDATE delivery SET state = 'sent', accepted_at = ?, detail = ?"
            " WHERE report = ? AND destination = ?",
            (at, detail, report_id, destination),
        )
        refresh_report_status(conn, report_id)
        if also is not None:
            also()
