"""The collector daemon's access to its database, through aiosqlite (its event loop must never
wait on SQLite): opening the writer's connection, writing a flush's batch, and retention.

The batch's statements are built by ``collected`` (the same upserts ``collected.write`` runs);
the schema is ``collected_schema``'s, which ``collected_schema.connect`` must have migrated
before :func:`connect` is called.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from tlsrpt_reporter.store.collected import WriteBatch
from tlsrpt_reporter.store.tx import async_transaction

# Retention: every table of counts, by day.
_PRUNE = (
    "DELETE FROM failure_count WHERE day < ?",
    "DELETE FROM policy_count WHERE day < ?",
    "DELETE FROM day_counter WHERE day < ?",
)


async def connect(path: str | Path) -> aiosqlite.Connection:
    """The daemon's connection to the (already migrated) database at ``path``, in autocommit
    mode. Raises sqlite3.Error when SQLite refuses."""
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        # A short busy timeout: when another process holds the write lock, the flush fails
        # fast and keeps its aggregate in memory for the next one, instead of holding up the
        # flush loop (and its metrics) for seconds.
        await db.execute("PRAGMA busy_timeout = 200")
        # As collected_schema.migrate: upserts keyed by hashes land on random pages. The page
        # cache size is per connection, so the daemon's own connection asks again.
        await db.execute("PRAGMA cache_size = -8192")
    except BaseException:
        await db.close()
        raise
    return db


async def write(db: aiosqlite.Connection, batch: WriteBatch) -> None:
    """Apply one batch in one transaction (all of it or nothing): one round trip to aiosqlite's
    thread per statement, whatever the number of rows. Raises sqlite3.Error."""
    async with async_transaction(db):
        for sql, rows in batch.statements:
            await db.executemany(sql, rows)


async def prune(db: aiosqlite.Connection, before_day: str) -> None:
    """Delete every day older than ``before_day`` (``YYYY-MM-DD``) from every table of counts,
    in one transaction (retention). Raises sqlite3.Error."""
    async with async_transaction(db):
        for sql in _PRUNE:
            await db.execute(sql, (before_day,))
