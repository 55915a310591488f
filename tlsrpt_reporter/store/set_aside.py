"""Reports set aside: a report of one (day, domain) that could not be built, or that failed the
schema, is kept out of the day with its reason, so every other report goes out as usual.

The row says which program version tried and how often it was retried: a new version retries
it once by itself (it may carry the fix), and ``tlsrpt-reporter retry-failed`` retries it on
the operator's word. A retry that builds stores the report and removes the row in one
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.store.reports import insert_report
from tlsrpt_reporter.store.state_db import StateDb
from tlsrpt_reporter.store.tx import transaction


@dataclass(frozen=True)
class SetAside:
    """One report that could not be built."""

    day: str
    domain: str
    reason: str
    version: str
    at: float
    retries: int


def listed(conn: StateDb, day: str | None = None) -> list[SetAside]:
    """The reports set aside (of ``day``, when given), oldest day first."""
    sql = "SELECT day, domain, reason, version, at, retries FROM set_aside"
    if day is None:
        rows = conn.execute(sql + " ORDER BY day, domain")
    else:
        rows = conn.execute(sql + " WHERE day = ? ORDER BY domain", (day,))
    return [SetAside(*row) for row in rows]


def resolve(conn: StateDb, day: str, report: dict[str, Any]) -> None:
    """A retry built the report: store it (pending) and forget that it was set aside."""
    with transaction(conn):
        insert_report(conn, day, report)
        conn.execute("DELETE FROM set_aside WHERE day = ? AND domain = ?", (day, report["domain"]))
        conn.execute("UPDATE built_day SET reports = reports + 1 WHERE day = ?", (day,))


def failed_again(
    conn: StateDb, day: str, domain: str, reason: str, *, version: str, now: float
) -> None:
    """A retry failed too: keep the newest reason and the version that tried, count it."""
    conn.execute(
        "UPDATE set_aside SET reason = ?, version = ?, at = ?, retries = retries + 1"
        " WHERE day = ? AND domain = ?",
        (reason, version, now, day, domain),
    )
