"""Read-only questions ``summary`` asks of the reporter's state database (schema in ``reports``):
what was built and delivered in a range of days, per day and per destination, and what is due
next. Nothing here writes; the collected sessions are read through ``report.sources``.

Days are ``YYYY-MM-DD`` strings, so a range of days is a range of strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlsrpt_reporter.store.state_db import StateDb


@dataclass(frozen=True)
class DestinationCounts:
    """The deliveries of a range of days to one destination URI, by state, and the last error
    a failed one recorded (``''`` when none)."""

    destination: str
    reports: int
    sent: int
    retrying: int
    pending: int
    given_up: int
    last_error: str


@dataclass(frozen=True)
class Due:
    """The earliest moment something is due to go out, and how many things are due then or
    earlier: reports still to resolve, deliveries to try (again)."""

    report_at: float | None
    reports: int
    delivery_at: float | None
    deliveries: int


def report_statuses_by_day(conn: StateDb, first: str, last: str) -> dict[str, dict[str, int]]:
    """Day -> report status -> how many of that day's reports have it, for days in
    [``first``, ``last``]."""
    out: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        "SELECT day, status, count(*) FROM report WHERE day BETWEEN ? AND ? GROUP BY day, status",
        (first, last),
    )
    for day, status, count in rows:
        out.setdefault(day, {})[status] = int(count)
    return out


def built_days(conn: StateDb, first: str, last: str) -> dict[str, int]:
    """Every built day in [``first``, ``last``] -> how many reports it produced."""
    rows = conn.execute(
        "SELECT day, reports FROM built_day WHERE day BETWEEN ? AND ? ORDER BY day",
        (first, last),
    )
    return {day: int(reports) for day, reports in rows}


def retrying_by_day(conn: StateDb, first: str, last: str) -> dict[str, int]:
    """Day -> how many of its reports wait for another attempt at some destination (a
    delivery in ``failed-retrying``) and none has accepted yet."""
    rows = conn.execute(
        "SELECT report.day, count(DISTINCT report.id) FROM report"
        " JOIN delivery ON delivery.report = report.id"
        " WHERE report.day BETWEEN ? AND ? AND report.status = 'sending'"
        " AND delivery.state = 'failed-retrying' GROUP BY report.day",
        (first, last),
    )
    return {day: int(count) for day, count in rows}


def destinations(conn: StateDb, first: str, last: str) -> list[DestinationCounts]:
    """The deliveries of days [``first``, ``last``] per destination, in destination order."""
    rows = conn.execute(
        "SELECT delivery.destination, count(*),"
        # CASE, not sum(a = b): PostgreSQL does not add up booleans.
        " sum(CASE WHEN delivery.state = 'sent' THEN 1 ELSE 0 END),"
        " sum(CASE WHEN delivery.state = 'failed-retrying' THEN 1 ELSE 0 END),"
        " sum(CASE WHEN delivery.state = 'pending' THEN 1 ELSE 0 END),"
        " sum(CASE WHEN delivery.state = 'given-up' THEN 1 ELSE 0 END)"
        " FROM delivery JOIN report ON report.id = delivery.report"
        " WHERE report.day BETWEEN ? AND ? GROUP BY delivery.destination"
        " ORDER BY delivery.destination",
        (first, last),
    ).fetchall()
    errors = _last_errors(conn, first, last)
    return [
        DestinationCounts(dest, int(n), int(sent), int(retrying), int(pending), int(given_up),
                          errors.get(dest, ""))
        for dest, n, sent, retrying, pending, given_up in rows
    ]  # fmt: skip


def _last_errors(conn: StateDb, first: str, last: str) -> dict[str, str]:
    """Destination -> the error of its unfinished or given-up delivery tried last (the latest
    next attempt stands for it: the table keeps no time of the last attempt)."""
    rows = conn.execute(
        "SELECT delivery.destination, delivery.last_error FROM delivery"
        " JOIN report ON report.id = delivery.report"
        " WHERE report.day BETWEEN ? AND ? AND delivery.last_error != ''"
        " AND delivery.state IN ('failed-retrying', 'given-up')"
        " ORDER BY delivery.next_attempt",
        (first, last),
    )
    # Later rows overwrite earlier ones: the last one of each destination stays.
    return dict(rows.fetchall())


def set_aside_count(conn: StateDb, first: str, last: str) -> int:
    """How many reports of days [``first``, ``last``] are set aside (cannot be built)."""
    row = conn.execute(
        "SELECT count(*) FROM set_aside WHERE day BETWEEN ? AND ?", (first, last)
    ).fetchone()
    return int(row[0])


def due(conn: StateDb) -> Due:
    """When the next pending report is resolved (its send time, or its retry time after a DNS
    failure) and the next unfinished delivery is tried, with how many there are of each, over
    every day."""
    report_at, reports = conn.execute(
        # The later of the two, written as CASE: SQLite's two-argument max() is not PostgreSQL's.
        "SELECT min(CASE WHEN coalesce(next_attempt, 0) > send_at THEN next_attempt"
        " ELSE send_at END), count(*) FROM report"
        " WHERE status = 'pending'"
    ).fetchone()
    delivery_at, deliveries = conn.execute(
        "SELECT min(next_attempt), count(*) FROM delivery"
        " WHERE state IN ('pending', 'failed-retrying')"
    ).fetchone()
    return Due(report_at, int(reports), delivery_at, int(deliveries))
