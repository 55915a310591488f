"""The collector database's schema, its migrations and opening it: the contract between the
collector (writer) and the reporter (reader). Writes and reads are in ``collected``.

Schema, version 3 (``PRAGMA user_version``), WAL mode so that readers never block the writer:

``policy_count``: one row per (day, domain, record, policy), keyed by (``day``, ``policy_key``)
    (WITHOUT ROWID: one B-tree per upsert, and a day is one range).
    ``policy_key`` (BLOB): a hash of the canonical key, so upserts need no wide index;
    ``day`` (TEXT ``YYYY-MM-DD``, the UTC day the session was received or happened);
    ``domain`` (the datagram's ``d``: lower-case A-label, no trailing dot);
    ``record`` (the ``_smtp._tls`` TXT record as the MTA saw it, ``''`` when none);
    ``policy_type`` (``sts`` | ``tlsa`` | ``no-policy-found``); ``policy_domain``;
    ``policy_string`` and ``mx_host`` (JSON arrays, in the order received);
    ``successful_session_count``, ``failed_session_count`` (INTEGER);
    ``first_seen``, ``last_seen`` (REAL, Unix time); the reporter takes the record seen last
    (``max(last_seen)`` by domain and record) when a domain's record changed during the day.
``failure_count``: one row per (policy row, failure detail), keyed by (``day``,
    ``policy_key``, ``detail_key``).
    ``policy_key`` (the parent row), ``detail_key`` (hash of the detail), ``day``,
    ``result_type`` (one of RFC 8460's eleven), the six optional RFC 8460 fields as columns
    named with underscores (NULL when unknown), ``failed_session_count``.
``day_counter``: (``day``, ``name``) -> ``value``: received, accepted, rejected,
    ``rejected:<reason>``, sessions, failures, failure-details and the decoder's notes.
``ingest_position`` (version 2): (``path``) -> where ``ingest-log --follow`` stopped reading
    that file: ``format``, ``device``, ``inode``, ``offset`` (bytes), ``state`` (JSON: the
    log adapter's open connections and the year guess), ``updated`` (Unix time). Only
    ``ingest-log`` reads or writes it (``ingest_position`` module).

Version 1 lacked ``ingest_position`` (``ingest-log`` created it on demand, with the same
columns). Version 2 may hold rows stored before the canonical forms (docs/canonical-forms.md):
the step to 3 rewrites every day's policy and failure rows into them (``collected_canon``), so
the collector's upserts hit the same keys. Readers accept versions 1 and 2 too, since they never
touch ``ingest_position`` and put what they read in canonical form anyway; writers migrate.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tlsrpt_reporter.errors import StoreError, os_fix
from tlsrpt_reporter.store.collected_canon import rewrite_rows
from tlsrpt_reporter.store.tx import transaction

SCHEMA_VERSION = 3
# The oldest version ``connect(create=False)`` (a reader) accepts: every version since has only
# added tables readers never use or rewritten rows into the forms readers put them in anyway,
# so the reporter reads a database the upgraded collector has not opened (and migrated) yet.
READABLE_SINCE = 1

# Each step: SQL statements (separated by ``;``), or a function run on the connection; both
# inside the step's transaction.
_MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    # 0 -> 1
    """
    CREATE TABLE policy_count (
        day TEXT NOT NULL,
        policy_key BLOB NOT NULL,
        domain TEXT NOT NULL,
        record TEXT NOT NULL,
        policy_type TEXT NOT NULL,
        policy_domain TEXT NOT NULL,
        policy_string TEXT NOT NULL,
        mx_host TEXT NOT NULL,
        successful_session_count INTEGER NOT NULL,
        failed_session_count INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (day, policy_key)
    ) WITHOUT ROWID;
    CREATE TABLE failure_count (
        day TEXT NOT NULL,
        policy_key BLOB NOT NULL,
        detail_key BLOB NOT NULL,
        result_type TEXT NOT NULL,
        sending_mta_ip TEXT,
        receiving_mx_hostname TEXT,
        receiving_mx_helo TEXT,
        receiving_ip TEXT,
        additional_information TEXT,
        failure_reason_code TEXT,
        failed_session_count INTEGER NOT NULL,
        PRIMARY KEY (day, policy_key, detail_key)
    ) WITHOUT ROWID;
    CREATE TABLE day_counter (
        day TEXT NOT NULL,
        name TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (day, name)
    ) WITHOUT ROWID;
    """,
    # 1 -> 2. IF NOT EXISTS: ingest-log of version 1 created this very table on demand, and the
    # positions saved in it must survive the upgrade.
    """
    CREATE TABLE IF NOT EXISTS ingest_position (
        path TEXT PRIMARY KEY,
        format TEXT NOT NULL,
        device INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        state TEXT NOT NULL,
        updated REAL NOT NULL
    );
    """,
    # 2 -> 3: every day's rows in canonical form, under the keys the collector computes now.
    rewrite_rows,
)


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (and with ``create``, create and migrate) the store at ``path``.

    Without ``create`` (a reader) the file must exist and have a schema this program reads.
    Raises StoreError naming the path and the likely fix.
    """
    path = Path(path)
    if not create and not path.exists():
        raise StoreError(f"no collector database at {path}: check --db or [collectd] db")
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {explain(path, exc)}") from None
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        if create:
            migrate(conn)
        else:
            _check_readable(user_version(conn))
    except StoreError as exc:
        conn.close()
        raise StoreError(f"database {path}: {exc}") from None
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open database {path}: {explain(path, exc)}") from None
    return conn


def explain(path: str | Path, exc: sqlite3.Error) -> str:
    """SQLite's error about the database file ``path`` with the likely cause and fix."""
    path = Path(path)
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (
            f"{text}: another process has held a write lock for over 10 s (an import writing "
            f"to it, or a stuck process): try again; 'fuser {path}' shows who holds it"
        )
    if "full" in text:
        return f"{text}: the file system of {path} is full: free some space"
    if "not a database" in text:
        return f"{text}: {path} is not a SQLite database: check the path"
    if "unable to open" in text or "readonly" in text or "I/O error" in text:
        # SQLite does not say which file or why: find the first thing in the way.
        for target, need in ((path.parent, os.W_OK | os.X_OK), (path, os.R_OK | os.W_OK)):
            if not target.exists():
                if target == path.parent:
                    return f"{text}: {os_fix(FileNotFoundError(errno.ENOENT, ''), target)}"
                continue
            if not os.access(target, need):
                return f"{text}: {os_fix(PermissionError(errno.EACCES, ''), target)}"
    return text


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in the database (0: an empty or foreign file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` and switch to WAL (idempotent).

    Each step is one transaction, so a crash leaves the database at a version, never between.
    """
    version = user_version(conn)
    _refuse_newer(version)
    # WAL: the reporter reads while the collector writes, and a SIGKILL never corrupts.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    # Policy keys are hashes, so upserts land on random pages: a larger page cache (8 MiB,
    # used only as the table grows) keeps them in memory.
    conn.execute("PRAGMA cache_size = -8192")
    # Truncate the WAL after checkpoints: a long outage must not leave a huge file behind.
    conn.execute("PRAGMA journal_size_limit = 67108864")
    for target in range(version, SCHEMA_VERSION):
        with transaction(conn):
            # Read again under the write lock: the collector and an ingest-log starting at
            # the same time both see the old version, and only the first may migrate.
            if user_version(conn) > target:
                continue
            step = _MIGRATIONS[target]
            if callable(step):
                step(conn)
            else:
                for statement in step.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target + 1}")


def _refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"schema version {version} is newer than this program's ({SCHEMA_VERSION}): "
            "upgrade tlsrpt-reporter"
        )


def _check_readable(version: int) -> None:
    _refuse_newer(version)
    if version < READABLE_SINCE:
        raise StoreError(
            f"schema version {version} is older than this program's ({SCHEMA_VERSION}): "
            "start the upgraded tlsrpt-collectd once to migrate it"
        )
