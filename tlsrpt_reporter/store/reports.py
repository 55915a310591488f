"""The reporter's state database: built reports and the delivery of each to each destination.

Schema, version 7 (``PRAGMA user_version``; version 1 lacked ``delivery.error_kind``,
version 2 the ``set_aside`` table, version 3 ``meta`` and ``delivery.message_id``/``date``,
version 4 ``suppressed`` and ``destination_day``, see ``store.suppressed``, version 5 the
index of ``delivery`` by ``destination``, version 6 the leases). This is SQLite's script and
its migrations are in ``store.state_schema_sqlite``, PostgreSQL's script of the same version in
``store.state_schema_pg``.

``built_day``: (``day``) -> ``built_at``, ``reports``: a day is built once. ``build_due`` stores
    its reports in batches, several to a transaction, and this row after the last
    (``store.report_batches``): a day without it is built again, keeping the reports stored.
``report``: one row per (day, domain): the report's stored bytes (``gzip``), ``report_id``
    (fixed when built, so every retry reuses it), ``message_id`` (the stem each destination's
    Message-ID is made from), ``date`` (when it was built, RFC 5322 form), the record its
    destinations come from (``''``: look it up in DNS at send time), ``send_at``, and
    ``status``: ``pending`` (destinations not resolved yet) -> ``sending`` -> ``delivered`` (one
    destination accepted) | ``given-up`` | ``no-destination``.
``delivery``: one row per (report, destination URI): ``state`` ``pending`` |
    ``failed-retrying`` | ``sent`` | ``given-up`` | ``skipped`` (never tried: the report
    already goes to enough destinations on that host; ``detail`` says so) | ``suppressed``
    (never tried: the destination is dead, ``store.suppressed``; ``detail`` says until when),
    ``attempts``,
    ``first_attempt``,
    ``next_attempt``, ``accepted_at``, ``last_error``, ``error_kind`` (the last error's kind,
    one of ``deliver.error_kinds.KINDS``; ``''`` in rows from version 1), ``detail``, and for
    a ``mailto:`` destination the mail's ``message_id`` and ``date``, fixed when it is first
    handed over (``''`` before that), so a retry is byte-identical to the first attempt.
``set_aside``: one row per (day, domain) whose report could not be built or failed the schema:
    ``reason``, the program ``version`` that tried, ``at``, ``retries`` (see ``store.set_aside``).
``meta``: ``key`` -> ``value``: this reporter instance's ``instance_id`` (see ``store.instance``).
``lease``: ``name`` -> ``holder``, ``until``: who builds a day (``build:DAY``) while reporters
    share the database; ``report`` and ``delivery`` carry ``lease_holder`` and ``lease_until``
    for resolving a report and attempting a delivery (``store.leases``).

Every change is committed before the next network action, so a crash at any moment loses no
pending report, and an attempt is recorded before it starts (the one exception: a pass's
lookups of TLSRPT records run while the answers before them are stored, which loses nothing).
A receiver's acceptance is committed in a transaction of its own (``store.accepted``) the
moment its final answer arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsrpt_reporter.store import pg_state, state_schema_pg, state_schema_sqlite
from tlsrpt_reporter.store.state_db import StateDb, dialect, is_postgresql
from tlsrpt_reporter.store.tx import transaction

SCHEMA_VERSION = 7

# Every value of report.status and delivery.state, in the order of their life.
REPORT_STATUSES = ("pending", "sending", "delivered", "given-up", "no-destination")
DELIVERY_STATES = ("pending", "failed-retrying", "sent", "given-up", "skipped", "suppressed")


@dataclass(frozen=True)
class ReportRow:
    """A stored report, as the sender needs it."""

    id: int
    day: str
    domain: str
    report_id: str
    message_id: str
    date: str
    filename: str
    gzip: bytes
    summary: str
    record: str
    send_at: float
    status: str
    attempts: int
    first_attempt: float | None


@dataclass(frozen=True)
class DeliveryRow:
    """One (report, destination) pair."""

    report: int
    destination: str
    state: str
    attempts: int
    first_attempt: float | None
    next_attempt: float
    # A mailto: destination's Message-ID and Date once first handed over ('' before).
    message_id: str = ""
    date: str = ""
    error_kind: str = ""  # of the last failed attempt ('' before any)


def connect(path: str | Path) -> StateDb:
    """Open (creating and migrating) the state database: a SQLite file, or the PostgreSQL
    database a ``postgresql://`` URL names (``store.pg_state``; docs/fleet.md)."""
    if is_postgresql(str(path)):
        shared = pg_state.connect(str(path))
        try:
            state_schema_pg.create_or_check(shared, SCHEMA_VERSION)
        except BaseException:
            shared.close()
            raise
        return shared
    return state_schema_sqlite.open_file(path, SCHEMA_VERSION)


def is_built(conn: StateDb, day: str) -> bool:
    """Whether ``day`` was built already."""
    return conn.execute("SELECT 1 FROM built_day WHERE day = ?", (day,)).fetchone() is not None


def insert_day(
    conn: StateDb,
    day: str,
    now: float,
    reports: list[dict[str, Any]],
    *,
    note: str = "",
    set_aside: Sequence[tuple[str, str, str]] = (),
) -> None:
    """Store a built day, its reports and the (domain, reason, version) of each report set
    aside in one transaction (all or nothing)."""
    with transaction(conn):
        for r in reports:
            insert_report(conn, day, r)
        if set_aside:
            conn.executemany(
                "INSERT INTO set_aside (day, domain, reason, version, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (day, domain) DO UPDATE SET reason = excluded.reason,"
                " version = excluded.version, at = excluded.at, retries = 0",
                [(day, domain, reason, version, now) for domain, reason, version in set_aside],
            )
        conn.execute(
            "INSERT INTO built_day (day, built_at, reports, note) VALUES (?, ?, ?, ?)",
            (day, now, len(reports), note),
        )


def insert_report(conn: StateDb, day: str, r: dict[str, Any]) -> None:
    """Insert one built report, pending (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO report (day, domain, report_id, message_id, date, filename, gzip,"
        " summary, record, send_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
        (day, r["domain"], r["report_id"], r["message_id"], r["date"], r["filename"],
         r["gzip"], r["summary"], r["record"], r["send_at"]),
    )  # fmt: skip


_REPORT_COLUMNS = (
    "id, day, domain, report_id, message_id, date, filename, gzip, summary, record, send_at,"
    " status, attempts, first_attempt"
)


# Resolving a report needs everything but its bytes (each attempt reads them again): a day of
# 100,000 reports listed with their gzip held ~300 MiB in the send process.
_RESOLVE_COLUMNS = _REPORT_COLUMNS.replace("gzip,", "substr(gzip, 1, 0),")


def reports_to_resolve(conn: StateDb, now: float, force: bool) -> list[ReportRow]:
    """Pending reports whose send time (and, after a DNS failure, retry time) has come; their
    ``gzip`` is left empty (read it with :func:`report`)."""
    rows = conn.execute(
        f"SELECT {_RESOLVE_COLUMNS} FROM report WHERE status = 'pending'"  # noqa: S608
        " AND (? OR (send_at <= ? AND coalesce(next_attempt, 0) <= ?)) ORDER BY send_at",
        (force, now, now),
    )
    return [ReportRow(*row) for row in rows]


def report(conn: StateDb, report_id: int) -> ReportRow:
    """One stored report by row id."""
    sql = f"SELECT {_REPORT_COLUMNS} FROM report WHERE id = ?"  # noqa: S608 (a constant)
    row = conn.execute(sql, (report_id,))
    return ReportRow(*row.fetchone())


_REPORT_SETTABLE = frozenset(("status", "attempts", "first_attempt", "next_attempt", "last_error"))
_DELIVERY_SETTABLE = frozenset(
    ("state", "attempts", "first_attempt", "next_attempt", "accepted_at", "last_error",
     "error_kind", "detail", "message_id", "date", "lease_holder")
)  # fmt: skip


def _assignments(values: dict[str, Any], allowed: frozenset[str]) -> str:
    # Column names are whitelisted here, never taken from data, so the f-strings are safe.
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"not an updatable column: {sorted(unknown)}")
    return ", ".join(f"{k} = ?" for k in values)


def set_report(conn: StateDb, report_id: int, **values: Any) -> None:
    """Update columns of a report row (committed at once)."""
    sql = f"UPDATE report SET {_assignments(values, _REPORT_SETTABLE)} WHERE id = ?"  # noqa: S608
    conn.execute(sql, (*values.values(), report_id))


def add_destinations(
    conn: StateDb, report_id: int, destinations: list[tuple[str, str, str]], now: float
) -> None:
    """Create the delivery rows (destination, state, detail) and mark the report sending."""
    with transaction(conn):
        insert_destinations(conn, report_id, destinations, now)
        conn.execute("UPDATE report SET status = 'sending' WHERE id = ?", (report_id,))


def insert_destinations(
    conn: StateDb, report_id: int, destinations: list[tuple[str, str, str]], now: float
) -> list[tuple[str, str]]:
    """Create the delivery rows (destination, state, detail) of a report inside the caller's
    transaction; the (destination, state) of those that were not there yet."""
    added = []
    for destination, state, detail in destinations:
        cursor = conn.execute(
            "INSERT INTO delivery (report, destination, state, next_attempt, detail)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (report, destination) DO NOTHING",
            (report_id, destination, state, now, detail),
        )
        if cursor.rowcount:
            added.append((destination, state))
    return added


def due_deliveries(conn: StateDb, now: float, force: bool) -> list[DeliveryRow]:
    """Deliveries to attempt now (all unfinished ones with ``force``)."""
    rows = conn.execute(
        "SELECT report, destination, state, attempts, first_attempt, next_attempt, message_id,"
        " date, error_kind FROM delivery WHERE state IN ('pending', 'failed-retrying')"
        " AND (? OR next_attempt <= ?) ORDER BY next_attempt",
        (force, now),
    )
    return [DeliveryRow(*row) for row in rows]


def set_delivery(conn: StateDb, report_id: int, destination: str, **values: Any) -> None:
    """Update columns of a delivery row (committed at once)."""
    sql = (
        f"UPDATE delivery SET {_assignments(values, _DELIVERY_SETTABLE)}"  # noqa: S608
        " WHERE report = ? AND destination = ?"
    )
    conn.execute(sql, (*values.values(), report_id, destination))


# The delivery states the daily cap's count below leaves out (nothing was sent or will be); the
# sender's running count of a pass leaves out the same (deliver.destinations).
UNCOUNTED_STATES = ("given-up", "skipped", "suppressed")
# CROSS JOIN keeps delivery the outer loop (SQLite never reorders it), so the count looks the
# destination up in its index; left to itself the planner walked every report of the day.
SENT_TO_DESTINATION = (
    "SELECT count(*) FROM delivery CROSS JOIN report ON report.id = delivery.report"
    " WHERE report.day = ? AND delivery.destination = ?"
    " AND delivery.state NOT IN ('given-up', 'skipped', 'suppressed')"
)


def sent_to_destination(conn: StateDb, day: str, destination: str) -> int:
    """How many of ``day``'s reports already went (or are going) to ``destination``."""
    sql = SENT_TO_DESTINATION
    if dialect(conn) == "postgresql":  # whose planner picks the index itself
        sql = sql.replace(" CROSS JOIN ", " JOIN ")
    row = conn.execute(sql, (day, destination))
    return int(row.fetchone()[0])


def refresh_report_status(conn: StateDb, report_id: int) -> str:
    """Derive a sending report's status from its deliveries and store it."""
    states = [r[0] for r in conn.execute("SELECT state FROM delivery WHERE report = ?",
                                         (report_id,))]  # fmt: skip
    if "sent" in states:
        status = "delivered"
    elif states and all(s in ("given-up", "skipped", "suppressed") for s in states):
        # Nothing was tried when every destination is dead: not a failure of ours.
        status = "no-destination" if set(states) == {"suppressed"} else "given-up"
    else:
        status = "sending"
    conn.execute("UPDATE report SET status = ? WHERE id = ?", (status, report_id))
    return status
