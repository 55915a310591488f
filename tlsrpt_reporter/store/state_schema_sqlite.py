"""The state database's tables in SQLite's dialect: the script of the current version, the
migrations from every older one, and opening a file with them.

The tables and columns are described in ``store.reports``, which owns the version number;
PostgreSQL's script of the same version is ``store.state_schema_pg`` (a test compares the
two). Nothing here reads or writes a report.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import suppressed
from tlsrpt_reporter.store.tx import transaction

_SCHEMA = """
CREATE TABLE built_day (
    day TEXT PRIMARY KEY,
    built_at REAL NOT NULL,
    reports INTEGER NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE report (
    id INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    domain TEXT NOT NULL,
    report_id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    date TEXT NOT NULL,
    filename TEXT NOT NULL,
    gzip BLOB NOT NULL,
    summary TEXT NOT NULL,
    record TEXT NOT NULL,
    send_at REAL NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_attempt REAL,
    next_attempt REAL,
    last_error TEXT NOT NULL DEFAULT '',
    lease_holder TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    UNIQUE (day, domain)
);
CREATE INDEX report_due ON report (status, send_at);
CREATE TABLE delivery (
    report INTEGER NOT NULL REFERENCES report (id),
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_attempt REAL,
    next_attempt REAL NOT NULL,
    accepted_at REAL,
    last_error TEXT NOT NULL DEFAULT '',
    error_kind TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL DEFAULT '',
    date TEXT NOT NULL DEFAULT '',
    lease_holder TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (report, destination)
);
CREATE INDEX delivery_due ON delivery (state, next_attempt);
"""
# The daily cap per destination counts a day's deliveries to one destination for every rua of
# every report: without it each count scans the whole table (quadratic in the day's reports).
_DELIVERY_BY_DESTINATION = (
    "CREATE INDEX IF NOT EXISTS delivery_destination ON delivery (destination)"
)
_SET_ASIDE = """CREATE TABLE set_aside (
    day TEXT NOT NULL,
    domain TEXT NOT NULL,
    reason TEXT NOT NULL,
    version TEXT NOT NULL,
    at REAL NOT NULL,
    retries INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, domain)
)"""
_META = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
# Claims of reporters sharing the database (store.leases): a day's build, by name.
_LEASE = "CREATE TABLE lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL)"
_SCHEMA += f"{_SET_ASIDE};\n{_META};\n{_LEASE};\n"
_SCHEMA += "".join(f"{table};\n" for table in suppressed.TABLES)
_SCHEMA += f"{_DELIVERY_BY_DESTINATION};\n"
# What each older version lacks, applied in order under one write lock.
_MIGRATIONS = {
    1: ("ALTER TABLE delivery ADD COLUMN error_kind TEXT NOT NULL DEFAULT ''",),
    2: (_SET_ASIDE,),
    3: (
        "ALTER TABLE delivery ADD COLUMN message_id TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE delivery ADD COLUMN date TEXT NOT NULL DEFAULT ''",
        # A mail already tried went out with the report's Message-ID and Date: keep them, so
        # its retries stay byte-identical (RFC 8460 §5.5).
        "UPDATE delivery SET"
        " message_id = (SELECT message_id FROM report WHERE report.id = delivery.report),"
        " date = (SELECT date FROM report WHERE report.id = delivery.report)"
        " WHERE attempts > 0 AND destination LIKE 'mailto:%'",
        _META,
    ),
    4: suppressed.TABLES,
    5: (_DELIVERY_BY_DESTINATION,),
    6: (
        "ALTER TABLE report ADD COLUMN lease_holder TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE report ADD COLUMN lease_until REAL NOT NULL DEFAULT 0",
        "ALTER TABLE delivery ADD COLUMN lease_holder TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE delivery ADD COLUMN lease_until REAL NOT NULL DEFAULT 0",
        _LEASE,
    ),
}


def open_file(path: str | Path, current: int) -> sqlite3.Connection:
    """Open the state database file at ``path`` (WAL, foreign keys), creating its tables at
    version ``current`` or migrating older ones; StoreError for a newer one or a file SQLite
    cannot use."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > current:
            conn.close()
            raise StoreError(
                f"state database {path} has schema version {version}, newer than this "
                f"program's ({current}): upgrade tlsrpt-reporter"
            )
        if version == 0:
            with transaction(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {current}")
        elif version < current:
            with transaction(conn):
                # Read again under the write lock: `status` may migrate while `run` starts.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                for step in range(version, current):
                    for statement in _MIGRATIONS[step]:
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {current}")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open state database {path}: {store.explain(path, exc)}") from None
    return conn
