"""Claims on work shared by several reporters of one state database (docs/fleet.md).

Several reporter instances may share a PostgreSQL state database; each piece of work is done by
the one that claims it: building a day (a named row of the ``lease`` table), resolving a report
and attempting a delivery (the ``lease_holder`` and ``lease_until`` columns of their rows). A
claim is a lease with an expiry: a reporter killed while it holds one stops renewing it, and
once it has expired another reporter takes the work over. Work is never lost, and at worst done
twice with the same stored bytes (the same Report-ID), which the receiver can drop (RFC 8460
§5.3 asks receivers to handle duplicates by Report-ID).

Each claim is one statement: a row claimed is locked (``FOR UPDATE``) until the statement ends,
and on PostgreSQL a reporter skips rows another is claiming at that moment (``SKIP LOCKED``)
instead of waiting for them.

Leases are kept only where reporters share the database, on PostgreSQL. A SQLite state
database has one reporter at a time (its lock file, ``store.process_lock``): there every claim
succeeds without a write, so a reporter restarted after a crash retries at once instead of
waiting for its own dead lease, and no statement is added to the single host's passes.

A holder names one reporter process: :func:`holder` makes it (host, process, random part).
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
from collections.abc import Mapping
from typing import Any

from tlsrpt_reporter.store.state_db import StateDb, dialect

# How long a claimed build is safe from others without a renewal: the build renews it at every
# commit (every few seconds).
BUILD_LEASE = 600.0


def work_lease(deadline: float) -> float:
    """How long a claim on one report or delivery lasts: past the attempt's ``deadline``
    (``reporter.attempt_deadline``), with room to record its outcome. A reporter that dies
    holding one delays that work by this much, no more."""
    return deadline * 1.1 + 5.0


@functools.cache
def holder() -> str:
    """A name for this reporter process, unique among the reporters of a database (the same
    for every call in one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def shared(conn: StateDb) -> bool:
    """Whether reporters may share ``conn``'s database, and so claim work from each other."""
    return dialect(conn) == "postgresql"


def claim_named(conn: StateDb, name: str, who: str, now: float, ttl: float = BUILD_LEASE) -> bool:
    """Take (or renew) the lease ``name`` for ``who`` until ``now + ttl``, unless another
    holder's lease on it is still running; True when ``who`` holds it afterwards."""
    if not shared(conn):
        return True
    row = conn.execute(
        "INSERT INTO lease (name, holder, until) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until"
        " WHERE lease.holder = excluded.holder OR lease.until <= ?"
        " RETURNING holder",
        (name, who, now + ttl, now),
    ).fetchone()
    return row is not None


def release_named(conn: StateDb, name: str, who: str) -> None:
    """Give up the lease ``name`` if ``who`` holds it."""
    if shared(conn):
        conn.execute("DELETE FROM lease WHERE name = ? AND holder = ?", (name, who))


def named_holder(conn: StateDb, name: str, now: float) -> str | None:
    """Who holds the lease ``name`` at ``now`` (None: nobody, or it expired)."""
    row = conn.execute("SELECT holder FROM lease WHERE name = ? AND until > ?", (name, now))
    found = row.fetchone()
    return None if found is None else str(found[0])


def claim_report(conn: StateDb, report: int, who: str, *, now: float, ttl: float) -> bool:
    """Claim pending report ``report`` to resolve its destinations; False when another
    reporter holds it or it is no longer pending."""
    if not shared(conn):
        return True
    row = conn.execute(
        "UPDATE report SET lease_holder = ?, lease_until = ? WHERE id IN ("
        " SELECT id FROM report WHERE id = ? AND status = 'pending'"
        " AND (lease_holder = ? OR lease_holder = '' OR lease_until <= ?)"
        " FOR UPDATE SKIP LOCKED) RETURNING id",
        (who, now + ttl, report, who, now),
    ).fetchone()
    return row is not None


# What an attempt's start records besides the claim (the columns ``deliver.sender`` sets).
_ATTEMPT_COLUMNS = frozenset({"attempts", "first_attempt", "next_attempt", "message_id", "date"})


def start_attempt(
    conn: StateDb,
    delivery: tuple[int, str],
    who: str,
    *,
    now: float,
    ttl: float,
    seen_attempts: int,
    values: Mapping[str, Any],
) -> bool:
    """Record that an attempt of ``delivery`` (report, destination) starts, with ``values``,
    and claim the delivery for it until ``now + ttl``, in one statement (one commit, as the
    record alone took). False, and nothing written, when another reporter holds the delivery
    or attempted it since it was read (its ``attempts`` is no longer ``seen_attempts``)."""
    if not values or not set(values) <= _ATTEMPT_COLUMNS:
        raise ValueError(f"not columns of an attempt's start: {sorted(values)}")
    assignments = ", ".join(f"{column} = ?" for column in values)
    if not shared(conn):  # the one reporter: the record alone, as before leases
        conn.execute(
            f"UPDATE delivery SET {assignments} WHERE report = ? AND destination = ?",  # noqa: S608
            (*values.values(), *delivery),
        )
        return True
    row = conn.execute(
        f"UPDATE delivery SET {assignments}, lease_holder = ?, lease_until = ?"  # noqa: S608
        " WHERE (report, destination) IN ("
        " SELECT report, destination FROM delivery WHERE report = ? AND destination = ?"
        " AND attempts = ? AND state IN ('pending', 'failed-retrying')"
        " AND (lease_holder = ? OR lease_holder = '' OR lease_until <= ?)"
        f" FOR UPDATE SKIP LOCKED) RETURNING report",
        (*values.values(), who, now + ttl, *delivery, seen_attempts, who, now),
    ).fetchone()
    return row is not None
