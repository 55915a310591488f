"""Dead destinations: the ones no report is sent to for a while, and the daily outcomes of the
attempts to each that decide it (``deliver.dead`` holds the rule, ``deliver.suppression`` applies
it).

Two tables of the state database (schema version 5, created and migrated by ``store.reports``):

``suppressed``: one row per destination URI, exactly as the record wrote it (``mailto:addr`` or
    the https URI), that gets no attempt until ``until``: ``since`` (Unix times), ``reason``
    (the failure of its last failed day), ``failed_days`` (how many days in a row failed).
``destination_day``: (destination, UTC ``day`` of the attempts) -> ``delivered`` (attempts it
    accepted), ``failed`` (attempts that failed at its side; failures on our side are not
    counted at all), ``last_error``. A success removes the days before it, and at most
    ``keep`` days are kept per destination, so the table stays a few rows per destination.

Releasing a destination (by hand or when ``until`` passes) makes its ``suppressed`` deliveries
of reports still inside the retry window due again. Nothing here decides what is dead.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from tlsrpt_reporter.store.state_db import StateDb
from tlsrpt_reporter.store.tx import transaction

SUPPRESSED_TABLE = """CREATE TABLE IF NOT EXISTS suppressed (
    destination TEXT PRIMARY KEY,
    since REAL NOT NULL,
    until REAL NOT NULL,
    reason TEXT NOT NULL,
    failed_days INTEGER NOT NULL
)"""
DESTINATION_DAY_TABLE = """CREATE TABLE IF NOT EXISTS destination_day (
    destination TEXT NOT NULL,
    day TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (destination, day)
)"""
#: What schema version 5 added, for ``store.reports``' creation and migration.
TABLES = (SUPPRESSED_TABLE, DESTINATION_DAY_TABLE)


@dataclass(frozen=True)
class Suppressed:
    """A destination that gets no report until ``until`` (Unix time)."""

    destination: str
    since: float
    until: float
    reason: str
    failed_days: int


@dataclass(frozen=True)
class DayOutcome:
    """The attempts to one destination on one UTC day that reached a verdict."""

    day: str
    delivered: int
    failed: int
    last_error: str = ""


_COLUMNS = "destination, since, until, reason, failed_days"


def active(conn: StateDb, destination: str, now: float) -> Suppressed | None:
    """The suppression of ``destination`` in force at ``now`` (None: none)."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM suppressed WHERE destination = ? AND until > ?",  # noqa: S608
        (destination, now),
    ).fetchone()
    return Suppressed(*row) if row else None


def listed(conn: StateDb, now: float) -> list[Suppressed]:
    """Every suppression in force at ``now``, the oldest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM suppressed WHERE until > ? ORDER BY since, destination",  # noqa: S608
        (now,),
    )
    return [Suppressed(*row) for row in rows]


def history(conn: StateDb, destination: str) -> list[DayOutcome]:
    """The days kept for ``destination``, the latest first."""
    rows = conn.execute(
        "SELECT day, delivered, failed, last_error FROM destination_day"
        " WHERE destination = ? ORDER BY day DESC",
        (destination,),
    )
    return [DayOutcome(*row) for row in rows]


def record_outcome(
    conn: StateDb,
    destination: str,
    day: str,
    *,
    delivered: bool,
    error: str = "",
    keep: int,
) -> None:
    """Count one attempt to ``destination`` on ``day``: accepted, or failed at its side; in
    the caller's transaction when one is open (:func:`_joined`), else in one of its own."""
    with _joined(conn):
        conn.execute(
            "INSERT INTO destination_day (destination, day, delivered, failed, last_error)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (destination, day) DO UPDATE SET"
            # The table's name on the left: PostgreSQL finds a bare column name ambiguous here.
            " delivered = destination_day.delivered + excluded.delivered,"
            " failed = destination_day.failed + excluded.failed,"
            " last_error = CASE WHEN excluded.last_error != '' THEN excluded.last_error"
            " ELSE destination_day.last_error END",
            (destination, day, int(delivered), int(not delivered), error[:1000]),
        )
        if delivered:
            # A success ends any run of failed days: what came before no longer matters.
            conn.execute(
                "DELETE FROM destination_day WHERE destination = ? AND day < ?",
                (destination, day),
            )
        else:
            conn.execute(
                "DELETE FROM destination_day WHERE destination = ? AND day NOT IN"
                " (SELECT day FROM destination_day WHERE destination = ?"
                " ORDER BY day DESC LIMIT ?)",
                (destination, destination, max(keep, 1)),
            )


def _joined(conn: StateDb) -> contextlib.AbstractContextManager[object]:
    """The caller's open transaction, or a new one. The sender counts an acceptance in the
    transaction that records it (``store.accepted``) and suppresses a destination in the one
    that stores a batch of resolved reports: every commit waits for the disk."""
    return contextlib.nullcontext() if conn.in_transaction else transaction(conn)


def suppress(conn: StateDb, entry: Suppressed) -> None:
    """Record ``entry`` (in the caller's transaction when one is open); the days that led to it
    are dropped, so that once it is released the destination needs as many failed days again
    before it is suppressed again."""
    with _joined(conn):
        conn.execute(
            f"INSERT INTO suppressed ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)"  # noqa: S608
            " ON CONFLICT (destination) DO UPDATE SET since = excluded.since,"
            " until = excluded.until, reason = excluded.reason,"
            " failed_days = excluded.failed_days",
            (entry.destination, entry.since, entry.until, entry.reason, entry.failed_days),
        )
        conn.execute("DELETE FROM destination_day WHERE destination = ?", (entry.destination,))


def release(conn: StateDb, destinations: list[str], now: float, retry_for: float) -> int:
    """Lift the suppression of ``destinations`` and make their suppressed deliveries of reports
    sent no longer than ``retry_for`` seconds ago due at ``now``; how many were revived."""
    revived = 0
    with transaction(conn):
        for destination in destinations:
            conn.execute("DELETE FROM suppressed WHERE destination = ?", (destination,))
            reports = [
                r[0]
                for r in conn.execute(
                    "SELECT delivery.report FROM delivery JOIN report ON report.id ="
                    " delivery.report WHERE delivery.destination = ?"
                    " AND delivery.state = 'suppressed' AND report.send_at >= ?",
                    (destination, now - retry_for),
                )
            ]
            for report in reports:
                conn.execute(
                    "UPDATE delivery SET state = 'pending', next_attempt = ?, detail = ''"
                    " WHERE report = ? AND destination = ?",
                    (now, report, destination),
                )
                # Settled only because of the suppression: sending again.
                conn.execute(
                    "UPDATE report SET status = 'sending' WHERE id = ?"
                    " AND status IN ('given-up', 'no-destination')",
                    (report,),
                )
            revived += len(reports)
    return revived


def expired(conn: StateDb, now: float) -> list[str]:
    """The destinations whose suppression ended by ``now``."""
    rows = conn.execute(
        "SELECT destination FROM suppressed WHERE until <= ? ORDER BY destination", (now,)
    )
    return [r[0] for r in rows]


def suppressed_deliveries(conn: StateDb, day: str) -> list[tuple[str, int, str]]:
    """(destination, how many reports, the detail of one) of ``day``'s deliveries that were
    suppressed, by destination."""
    rows = conn.execute(
        "SELECT delivery.destination, count(*), max(delivery.detail) FROM delivery"
        " JOIN report ON report.id = delivery.report WHERE report.day = ?"
        " AND delivery.state = 'suppressed' GROUP BY delivery.destination"
        " ORDER BY delivery.destination",
        (day,),
    )
    return [(dest, int(n), detail) for dest, n, detail in rows]
