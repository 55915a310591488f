"""This reporter instance's id, kept in the state database's ``meta`` table.

Two reporter instances that report the same day and domain must not send the same Report-ID
(RFC 8460 §4.4, §5.3): each puts its own instance id into the Report-ID. The id is random, made
once, on the first build, and kept here (``reporter.instance_id`` in the configuration
overrides it; the caller decides which one applies).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.store import pg_state, state_schema_pg
from tlsrpt_reporter.store.state_db import StateDb, is_postgresql
from tlsrpt_reporter.store.tx import transaction

_KEY = "instance_id"
_READ = "SELECT value FROM meta WHERE key = ?"


def instance_id(conn: StateDb, make: Callable[[], str]) -> str:
    """The stored instance id; the first call stores ``make()`` and returns it."""
    row = conn.execute(_READ, (_KEY,)).fetchone()
    if row is not None:  # every pass but the first: no write lock taken
        return str(row[0])
    with transaction(conn):
        row = conn.execute(_READ, (_KEY,)).fetchone()  # read again under the write lock
        if row is not None:
            return str(row[0])
        value = make()
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (_KEY, value))
    return value


def stored_instance_id(path: str | Path) -> str | None:
    """The instance id stored in the state database at ``path``, read without creating,
    migrating or writing anything (for the dry run); None when there is none to read."""
    if is_postgresql(str(path)):
        return _stored_in_postgresql(str(path))
    file = Path(path)
    if not file.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute(_READ, (_KEY,)).fetchone()
    except sqlite3.Error:  # no meta table yet (an older schema), or not readable
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def _stored_in_postgresql(url: str) -> str | None:
    """:func:`stored_instance_id` of a shared PostgreSQL state database (no tables: None)."""
    try:
        conn = pg_state.connect(url)
    except StoreError:
        return None
    try:
        if state_schema_pg.version(conn) == 0:
            return None
        row = conn.execute(_READ, (_KEY,)).fetchone()
    except StoreError:
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])
