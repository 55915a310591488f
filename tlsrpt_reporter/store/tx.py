"""The one way the project opens a write transaction: :func:`transaction` for a state database
connection (sqlite3's, or PostgreSQL's through ``store.pg_state``, which turns the same
``BEGIN IMMEDIATE`` into its own write lock) and its twin :func:`async_transaction` for the
collector daemon's aiosqlite one.

Both take the write lock at once (``BEGIN IMMEDIATE``): a deferred transaction that reads first
fails at once with "database is locked" when it comes to write after another connection wrote
(its snapshot is stale, so SQLite cannot wait), whereas a lock asked for at the start waits out
the busy timeout. The connection must be in autocommit mode (``isolation_level=None``), as every
connection of the store is, so that the sqlite3 module opens no transaction of its own.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, TypeVar

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.store.state_db import StateDb

if TYPE_CHECKING:
    import aiosqlite

# sqlite3's connection, or the PostgreSQL state connection (store.pg_state).
C = TypeVar("C", bound=StateDb)


@contextlib.contextmanager
def transaction(conn: C) -> Iterator[C]:
    """``with transaction(conn): ...``: BEGIN IMMEDIATE, COMMIT when the block ends, ROLLBACK
    when it raises (any exception, KeyboardInterrupt included), the exception re-raised.

    A failing BEGIN raises before the block runs. A failing COMMIT rolls back and raises.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # SQLite has already rolled back after some errors (a full disk, an I/O error): then
        # ROLLBACK fails with "no transaction is active", which must not hide the real error.
        with contextlib.suppress(sqlite3.Error, StoreError):
            conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def savepoint(conn: C, name: str = "part") -> Iterator[C]:
    """``with savepoint(conn): ...`` inside an open transaction: what the block wrote is undone
    when it raises (the exception re-raised), kept for the transaction's COMMIT otherwise. A
    batch of independent writes shares one commit and loses only the failing part."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield conn
    except BaseException:
        conn.execute(f"ROLLBACK TO {name}")
        raise
    finally:
        conn.execute(f"RELEASE {name}")


@contextlib.asynccontextmanager
async def async_transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """``async with async_transaction(db): ...``: :func:`transaction` for an aiosqlite
    connection; BEGIN and COMMIT are one round trip to aiosqlite's thread each."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        await db.execute("COMMIT")
    except BaseException:
        # As above; a cancelled flush also rolls back (aiosqlite runs the ROLLBACK after the
        # statement it was cancelled in, in order).
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise
