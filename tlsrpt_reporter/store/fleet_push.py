"""``tlsrpt-reporter push``: copy this MTA host's collected days from its SQLite database into
the fleet's PostgreSQL (docs/fleet.md), idempotently.

Each day of the window (today and ``days`` finished days before it) is one PostgreSQL
transaction: this host's rows of that day are deleted, the local rows inserted, and
``pushed_day`` updated. Rows are replaced, never added to, so a repeated or retried push never
counts twice; a day whose rows have not changed since the last push (same digest) is not
written at all. A day the collector holds nothing for is pushed too, as empty: an idle host
says so, and is not taken for a silent one. The collector's database is only read, inside one
read transaction per day (its WAL lets the collector write meanwhile); nothing local changes,
whatever PostgreSQL does, so a failed push is simply made up by the next.

This module must not be on the collector's receive path: a timer runs it (tlsrpt-push.timer).
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsrpt_reporter import utc
from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.store import collected, fleet_schema, pg_connect

if TYPE_CHECKING:
    import psycopg

# A push that reads the collector's database this long after a day ended has all of it: the
# collector writes what it received every flush_interval (1 s by default), so its last write
# of the day lands within seconds of midnight; five minutes also cover a slow write or a
# restart. A push before that marks the day incomplete, and the reporter waits for a later one.
COMPLETE_AFTER = 300.0
STATEMENT_TIMEOUT = 300.0

_LOCAL = {
    "fleet_policy": (
        "SELECT policy_key, domain, record, policy_type, policy_domain, policy_string, mx_host,"
        " successful_session_count, failed_session_count, first_seen, last_seen"
        " FROM policy_count WHERE day = ? ORDER BY policy_key"
    ),
    "fleet_failure": (
        "SELECT policy_key, detail_key, result_type, sending_mta_ip, receiving_mx_hostname,"
        " receiving_mx_helo, receiving_ip, additional_information, failure_reason_code,"
        " failed_session_count FROM failure_count WHERE day = ? ORDER BY policy_key, detail_key"
    ),
    "fleet_counter": "SELECT name, value FROM day_counter WHERE day = ? ORDER BY name",
}
_INSERT = {
    "fleet_policy": (
        "INSERT INTO fleet_policy (day, host, policy_key, domain, record, policy_type,"
        " policy_domain, policy_string, mx_host, successful_session_count,"
        " failed_session_count, first_seen, last_seen)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    ),
    "fleet_failure": (
        "INSERT INTO fleet_failure (day, host, policy_key, detail_key, result_type,"
        " sending_mta_ip, receiving_mx_hostname, receiving_mx_helo, receiving_ip,"
        " additional_information, failure_reason_code, failed_session_count)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    ),
    "fleet_counter": "INSERT INTO fleet_counter (day, host, name, value) VALUES (%s, %s, %s, %s)",
}
# This host's rows of a day (failure rows first, as in the collector's retention).
_DELETE_DAY = (
    "DELETE FROM fleet_failure WHERE day = %s AND host = %s",
    "DELETE FROM fleet_policy WHERE day = %s AND host = %s",
    "DELETE FROM fleet_counter WHERE day = %s AND host = %s",
)
# This host's days the collector no longer keeps.
_PRUNE = (
    "DELETE FROM fleet_failure WHERE host = %s AND day < %s",
    "DELETE FROM fleet_policy WHERE host = %s AND day < %s",
    "DELETE FROM fleet_counter WHERE host = %s AND day < %s",
    "DELETE FROM pushed_day WHERE host = %s AND day < %s",
)
_PUSHED = (
    "INSERT INTO pushed_day (host, day, pushed_at, complete, digest) VALUES (%s, %s, %s, %s, %s)"
    " ON CONFLICT (host, day) DO UPDATE SET pushed_at = excluded.pushed_at,"
    " complete = excluded.complete, digest = excluded.digest"
)


@dataclass(frozen=True)
class DayPush:
    """What a push did with one day: ``written`` (rows replaced), ``completed`` (only marked
    complete: the rows were already there) or ``unchanged``."""

    day: str
    outcome: str
    rows: int
    complete: bool


def window(now: float, days: int) -> list[str]:
    """Today and the ``days`` days before it, oldest first."""
    return [utc.day(now - back * 86400) for back in range(days, -1, -1)]


def is_complete(day: str, read_at: float) -> bool:
    """Whether a read of the collector's database at ``read_at`` holds all of ``day``."""
    end = calendar.timegm(dt.date.fromisoformat(day).timetuple()) + 86400
    return read_at >= end + COMPLETE_AFTER


async def push(
    conninfo: str,
    host: str,
    db: str | Path,
    *,
    days: int,
    retention_days: int,
    now: float,
) -> list[DayPush]:
    """Push the window's days of ``db`` as ``host``; then delete this host's days that the
    collector no longer keeps (older than ``retention_days``). StoreError, naming the server
    and libpq's error, when PostgreSQL cannot be reached or refuses."""
    local = collected.connect(db, create=False)
    try:
        conn = await pg_connect.connect(
            conninfo, statement_timeout=STATEMENT_TIMEOUT, purpose="push"
        )
        async with conn:
            try:
                await fleet_schema.require_current(conn, conninfo)
                done = [await _push_day(conn, local, host, day, now) for day in window(now, days)]
                await _prune(conn, host, utc.day(now - retention_days * 86400))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read {db}: {collected.explain(db, exc)}") from None
            except _psycopg_error() as exc:
                raise await _push_error(conn, conninfo, host, exc) from None
    finally:
        local.close()
    return done


def _psycopg_error() -> type[Exception]:
    import psycopg  # noqa: PLC0415

    return psycopg.Error


async def _push_error(
    conn: psycopg.AsyncConnection[tuple[Any, ...]], conninfo: str, host: str, exc: Exception
) -> StoreError:
    import psycopg  # noqa: PLC0415

    where = pg_connect.describe(conninfo)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege) and not conn.closed:
        return StoreError(
            f"{where}: role {conn.info.user} may not push the rows of host {host}: "
            f"{pg_connect.one_line(exc)}; fleet_host must map {host} to this role and the role "
            f'must be a member of {fleet_schema.PUSH_GROUP} (docs/fleet.md, "Roles and grants")'
        )
    return StoreError(f"push to {where} failed: {pg_connect.one_line(exc)}")


async def _push_day(
    conn: psycopg.AsyncConnection[tuple[Any, ...]],
    local: sqlite3.Connection,
    host: str,
    day: str,
    now: float,
) -> DayPush:
    date = dt.date.fromisoformat(day)
    local.execute("BEGIN")  # one snapshot of the day for the digest and the rows
    try:
        digest = _digest(local, day)
        complete = is_complete(day, now)
        cur = await conn.execute(
            "SELECT digest, complete FROM pushed_day WHERE host = %s AND day = %s", (host, date)
        )
        before = await cur.fetchone()
        if before is not None and bytes(before[0]) == digest and (before[1] or not complete):
            return DayPush(day, "unchanged", 0, bool(before[1]))
        pushed_at = dt.datetime.fromtimestamp(now, dt.UTC)
        rows = 0
        replace = before is None or bytes(before[0]) != digest
        async with conn.transaction():
            if replace:
                for sql in _DELETE_DAY:
                    await conn.execute(sql, (date, host))
                for table, sql in _INSERT.items():
                    counted = _Counted(_local_rows(local, table, day, (date, host)))
                    async with conn.cursor() as insert:
                        await insert.executemany(sql.encode(), counted)
                    rows += counted.count
            await conn.execute(_PUSHED, (host, date, pushed_at, complete, digest))
        return DayPush(day, "written" if replace else "completed", rows, complete)
    finally:
        local.execute("COMMIT")


def _local_rows(
    local: sqlite3.Connection, table: str, day: str, head: tuple[Any, ...]
) -> Iterator[tuple[Any, ...]]:
    for row in local.execute(_LOCAL[table], (day,)):
        yield (*head, *row)


class _Counted:
    """An iterable of rows that counts what was taken from it."""

    def __init__(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self.rows = rows
        self.count = 0

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for row in self.rows:
            self.count += 1
            yield row


def _digest(local: sqlite3.Connection, day: str) -> bytes:
    """A hash of every row of ``day`` in the collector's database, table by table, in key
    order: equal digests, equal rows."""
    digest = hashlib.blake2b(digest_size=16)
    for table, sql in _LOCAL.items():
        digest.update(table.encode())
        for row in local.execute(sql, (day,)):
            digest.update(repr(row).encode("utf-8", "surrogatepass"))
    return digest.digest()


async def _prune(conn: psycopg.AsyncConnection[tuple[Any, ...]], host: str, before: str) -> None:
    """Delete this host's days older than ``before`` (the collector's retention)."""
    cutoff = dt.date.fromisoformat(before)
    async with conn.transaction():
        for sql in _PRUNE:
            await conn.execute(sql, (host, cutoff))
