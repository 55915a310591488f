"""Read-only summaries of the reporter's state database (schema in ``reports``) for operators:
the ``status`` table, its JSON form and its Prometheus metrics.

Every function takes an optional ``day`` (``YYYY-MM-DD``): the summary of that built day, or,
with None, of every day.
"""

from __future__ import annotations

from tlsrpt_reporter.store.state_db import StateDb


def _day_is(column: str, day: str | None) -> tuple[str, tuple[str, ...]]:
    """A condition restricting ``column`` (a constant of this module) to ``day``, and its
    parameters. Two forms rather than ``?1 IS NULL OR day = ?1``, which no index can serve:
    ``status`` asks day by day, and the report table grows by a day's domains every day."""
    if day is None:
        return "1", ()
    return f"{column} = ?", (day,)


def built_days(conn: StateDb) -> dict[str, str]:
    """Every built day -> its note (``''`` when none), in day order."""
    return dict(conn.execute("SELECT day, note FROM built_day ORDER BY day").fetchall())


def built_summary(conn: StateDb, day: str | None = None) -> tuple[int, float | None]:
    """How many days were built, and the Unix time of the last build (None: never)."""
    where, args = _day_is("day", day)
    sql = f"SELECT count(*), max(built_at) FROM built_day WHERE {where}"  # noqa: S608
    count, last = conn.execute(sql, args).fetchone()
    return int(count), last


def report_counts(conn: StateDb, day: str | None = None) -> dict[str, int]:
    """Report status -> how many reports have it; statuses no report has are left out."""
    where, args = _day_is("day", day)
    sql = f"SELECT status, count(*) FROM report WHERE {where} GROUP BY status"  # noqa: S608
    return dict(conn.execute(sql, args).fetchall())


def delivery_counts(conn: StateDb, day: str | None = None) -> dict[str, int]:
    """Delivery state -> how many (report, destination) pairs are in it; states no delivery
    is in are left out."""
    where, args = _day_is("report.day", day)
    sql = (
        "SELECT delivery.state, count(*) FROM delivery"  # noqa: S608
        f" JOIN report ON report.id = delivery.report WHERE {where} GROUP BY delivery.state"
    )
    return dict(conn.execute(sql, args).fetchall())


def last_accepted(conn: StateDb, day: str | None = None) -> float | None:
    """The Unix time a destination last accepted a report (None: never)."""
    where, args = _day_is("report.day", day)
    sql = (
        "SELECT max(delivery.accepted_at) FROM delivery"  # noqa: S608
        f" JOIN report ON report.id = delivery.report WHERE {where}"
    )
    value: float | None = conn.execute(sql, args).fetchone()[0]
    return value


def last_errors(conn: StateDb, day: str, limit: int = 5) -> list[tuple[str, str, str]]:
    """(domain, destination, last error) of ``day``'s deliveries that have an error, the
    latest next attempt first, at most ``limit``."""
    rows = conn.execute(
        "SELECT report.domain, delivery.destination, delivery.last_error FROM delivery"
        " JOIN report ON report.id = delivery.report WHERE report.day = ?"
        " AND delivery.last_error != '' ORDER BY delivery.next_attempt DESC LIMIT ?",
        (day, limit),
    )
    return [(domain, destination, error) for domain, destination, error in rows]


def failed_deliveries(conn: StateDb, day: str | None = None) -> list[tuple[str, str, str]]:
    """(state, error kind, last error) of every delivery whose last attempt failed (state
    ``failed-retrying`` or ``given-up``) and says why; the kind is ``''`` in rows written
    before kinds were recorded (the caller derives it from the text)."""
    where, args = _day_is("report.day", day)
    sql = (
        "SELECT delivery.state, delivery.error_kind, delivery.last_error FROM delivery"  # noqa: S608
        f" JOIN report ON report.id = delivery.report WHERE {where}"
        " AND delivery.state IN ('failed-retrying', 'given-up')"
        " AND (delivery.error_kind != '' OR delivery.last_error != '')"
    )
    return [(state, kind, text) for state, kind, text in conn.execute(sql, args)]


def oldest_unsent_built_at(conn: StateDb, day: str | None = None) -> float | None:
    """When the day of the oldest report still ``pending`` or ``sending`` was built (None:
    every report is settled)."""
    where, args = _day_is("report.day", day)
    sql = (
        "SELECT min(built_day.built_at) FROM report"  # noqa: S608
        f" JOIN built_day ON built_day.day = report.day WHERE {where}"
        " AND report.status IN ('pending', 'sending')"
    )
    value: float | None = conn.execute(sql, args).fetchone()[0]
    return value
