"""The reporter's state database on PostgreSQL: a connection that takes the calls the store
modules make of ``sqlite3.Connection`` (docs/fleet.md).

The store modules write each statement once, in SQL both databases understand: ``?``
placeholders, ``INSERT ... ON CONFLICT``, ``CASE`` instead of SQLite's two-argument ``max``.
This module owns the rest of the difference and nothing else:

- placeholders: ``?`` becomes psycopg's ``%s`` (and a literal ``%`` is doubled);
- the write lock: SQLite's ``BEGIN IMMEDIATE`` takes the whole database's write lock, and the
  store's read-then-write transactions rely on it (two reporters must not both store the first
  instance id, or both decide a destination is dead). Here it becomes ``BEGIN`` followed by a
  transaction-level advisory lock that every reporter of the database takes the same way, so
  those transactions stay serialised across reporters as they are across processes on SQLite.
  Claiming work (``store.leases``) uses row locks instead, so reporters never wait for each
  other there;
- numbers: ``sum()`` of integers is ``numeric`` in PostgreSQL, read back as ``int`` (or
  ``float``) as SQLite gives it, never ``Decimal``.

psycopg is imported only when a PostgreSQL state database is opened (an optional extra).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.store import pg_connect

if TYPE_CHECKING:
    import psycopg

# The advisory lock key of the state database's write transactions (any constant the fleet's
# other users of advisory locks do not use: "TLSRPT" in ASCII).
WRITE_LOCK_KEY = 0x544C53525054
STATEMENT_TIMEOUT = 60.0

_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\?|%")


@functools.lru_cache(maxsize=512)
def translate(sql: str, with_parameters: bool) -> str:
    """``sql`` as psycopg takes it: ``?`` -> ``%s``, ``%`` -> ``%%`` (only when parameters are
    passed: without them psycopg reads the text as it is); quoted literals left alone."""
    if not with_parameters:
        return sql

    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        return text.replace("%", "%%")  # a literal: only its percent signs change

    return _QUOTED_OR_MARK.sub(one, sql)


class PgState:
    """A PostgreSQL state database connection with the ``sqlite3.Connection`` calls the store
    makes: :meth:`execute`, :meth:`executemany`, :attr:`in_transaction`, :meth:`close`."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection[tuple[Any, ...]], where: str) -> None:
        self._raw = raw
        self.where = where  # the server and database, for messages

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        """Run one statement; the cursor iterates and fetches as sqlite3's does. PostgreSQL's
        errors are :class:`StoreError` naming the server (as the store's callers expect of
        a database error, whichever the database)."""
        import psycopg  # noqa: PLC0415 (loaded already: the connection is psycopg's)

        head = sql.lstrip()[:16].upper()
        if head.startswith("PRAGMA"):
            raise StoreError(f"a SQLite PRAGMA sent to {self.where}: {sql.strip()[:60]}")
        try:
            if head.startswith("BEGIN IMMEDIATE"):
                self._raw.execute("BEGIN")
                return self._raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            params = tuple(parameters)
            return self._raw.execute(translate(sql, bool(params)), params or None)
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: {pg_connect.one_line(exc)}") from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        """Run one statement for each of ``rows``."""
        import psycopg  # noqa: PLC0415

        cursor = self._raw.cursor()
        try:
            cursor.executemany(translate(sql, True), [tuple(row) for row in rows])
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: {pg_connect.one_line(exc)}") from exc
        return cursor

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (as ``sqlite3.Connection.in_transaction``)."""
        import psycopg  # noqa: PLC0415

        return self._raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def close(self) -> None:
        """Close the connection (an open transaction is rolled back by the server)."""
        self._raw.close()


def connect(conninfo: str, *, statement_timeout: float = STATEMENT_TIMEOUT) -> PgState:
    """Open the state database at ``conninfo`` (no password in it: libpq's password file or
    service file holds it), in autocommit mode, integers summed read back as numbers."""
    pg_connect.require()
    import psycopg  # noqa: PLC0415
    from psycopg.adapt import Loader  # noqa: PLC0415

    where = pg_connect.describe(conninfo)

    class _Number(Loader):
        """``numeric`` as int when whole, else float (SQLite's integer and real)."""

        def load(self, data: Any) -> int | float:
            value = Decimal(bytes(data).decode())
            return int(value) if value == value.to_integral_value() else float(value)

    try:
        raw = psycopg.connect(
            conninfo,
            autocommit=True,
            connect_timeout=pg_connect.CONNECT_TIMEOUT,
            application_name=f"{pg_connect.APPLICATION_NAME} state",
        )
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {where}: {pg_connect.one_line(exc)}") from None
    raw.adapters.register_loader("numeric", _Number)
    millis = str(max(1, round(statement_timeout * 1000)))
    raw.execute("SELECT set_config('statement_timeout', %s, false)", (millis,))
    return PgState(raw, where)
