"""The SQLite store: the contract between the collector (writer) and the reporter (reader).

Schema, version 1 (``PRAGMA user_version``), WAL mode so that readers never block the writer:

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

Writers add to counters with upserts inside one transaction per flush, so a crash loses at most
the flush that was in flight and never leaves half of one. This module does no scheduling and
knows nothing of sockets.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsrpt_reporter.errors import StoreError, os_fix
from tlsrpt_reporter.model import FailureDetail, Policy
from tlsrpt_reporter.wire.aggregate import Aggregate, PolicyKey

SCHEMA_VERSION = 1

_MIGRATIONS: tuple[str, ...] = (
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
)

UPSERT_POLICY = """
INSERT INTO policy_count (policy_key, day, domain, record, policy_type, policy_domain,
    policy_string, mx_host, successful_session_count, failed_session_count, first_seen, last_seen)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (day, policy_key) DO UPDATE SET
    successful_session_count = successful_session_count + excluded.successful_session_count,
    failed_session_count = failed_session_count + excluded.failed_session_count,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen)
"""

UPSERT_DETAIL = """
INSERT INTO failure_count (policy_key, detail_key, day, result_type, sending_mta_ip,
    receiving_mx_hostname, receiving_mx_helo, receiving_ip, additional_information,
    failure_reason_code, failed_session_count)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (day, policy_key, detail_key) DO UPDATE SET
    failed_session_count = failed_session_count + excluded.failed_session_count
"""

UPSERT_COUNTER = """
INSERT INTO day_counter (day, name, value) VALUES (?, ?, ?)
ON CONFLICT (day, name) DO UPDATE SET value = value + excluded.value
"""

PRUNE = (
    "DELETE FROM failure_count WHERE day < ?",
    "DELETE FROM policy_count WHERE day < ?",
    "DELETE FROM day_counter WHERE day < ?",
)


def policy_key(key: PolicyKey) -> bytes:
    """The stable hash that identifies a (day, domain, record, policy) row."""
    cached = _POLICY_KEYS.get(key)
    if cached is not None:
        return cached
    day, domain, record, p = key
    # repr() of a tuple of strings is unambiguous (quotes and separators are escaped) and fast.
    canon = (day, domain, record, p.policy_type, p.policy_domain, p.policy_string, p.mx_host)
    digest = _hash(repr(canon).encode("utf-8", "surrogatepass"))
    if len(_POLICY_KEYS) >= _KEY_CACHE_LIMIT:
        _POLICY_KEYS.clear()
    _POLICY_KEYS[key] = digest
    return digest


def detail_key(detail: FailureDetail) -> bytes:
    """The stable hash that identifies a failure detail within its policy row."""
    canon = (detail.result_type, *detail.optional_values())
    return _hash(repr(canon).encode("utf-8", "surrogatepass"))


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


# The same keys come back flush after flush: hashing them once saves most of a flush's work.
_POLICY_KEYS: dict[PolicyKey, bytes] = {}
_KEY_CACHE_LIMIT = 5_000

Rows = Iterable[tuple[Any, ...]]


@dataclass(frozen=True)
class WriteBatch:
    """The upserts of one flush; rows are produced lazily, so a large flush never holds a
    second copy of the aggregate in memory. A batch can be written once."""

    statements: tuple[tuple[str, Rows], ...]


def build_batch(agg: Aggregate) -> WriteBatch:
    """Turn an aggregate into upsert parameter rows (pure; ``agg`` must not change until the
    batch is written)."""
    return WriteBatch(
        statements=(
            (UPSERT_POLICY, _policy_rows(agg)),
            (UPSERT_DETAIL, _detail_rows(agg)),
            (UPSERT_COUNTER, ((day, name, n) for (day, name), n in agg.counters.items())),
        )
    )


def _json_list(values: tuple[str, ...]) -> str:
    return json.dumps(values, ensure_ascii=False) if values else "[]"


def _policy_rows(agg: Aggregate) -> Iterator[tuple[Any, ...]]:
    for key, c in agg.policies.items():
        day, domain, record, p = key
        yield (
            policy_key(key),
            day,
            domain,
            record,
            p.policy_type,
            p.policy_domain,
            _json_list(p.policy_string),
            _json_list(p.mx_host),
            c.successful,
            c.failed,
            c.first_seen,
            c.last_seen,
        )


def _detail_rows(agg: Aggregate) -> Iterator[tuple[Any, ...]]:
    for (key, detail), n in agg.details.items():
        yield (
            policy_key(key),
            detail_key(detail),
            key[0],
            detail.result_type,
            *detail.optional_values(),
            n,
        )


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (and with ``create``, create and migrate) the store at ``path``.

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
            _check_version(conn)
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


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` and switch to WAL (idempotent)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"schema version {version} is newer than this program's ({SCHEMA_VERSION}): "
            "upgrade tlsrpt-reporter"
        )
    # WAL: the reporter reads while the collector writes, and a SIGKILL never corrupts.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    # Policy keys are hashes, so upserts land on random pages: a larger page cache (8 MiB,
    # used only as the table grows) keeps them in memory.
    conn.execute("PRAGMA cache_size = -8192")
    # Truncate the WAL after checkpoints: a long outage must not leave a huge file behind.
    conn.execute("PRAGMA journal_size_limit = 67108864")
    for target in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _check_version(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"schema version {version} is newer than this program's ({SCHEMA_VERSION}): "
            "upgrade tlsrpt-reporter"
        )
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"schema version {version} is older than this program's ({SCHEMA_VERSION}): "
            "start the upgraded tlsrpt-collectd once to migrate it"
        )


def write(conn: sqlite3.Connection, batch: WriteBatch) -> None:
    """Apply a batch in one transaction (synchronous; the daemon does the same via aiosqlite).

    Raises StoreError naming the file, the cause and the fix when SQLite refuses.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise _write_error(conn, exc) from None
    try:
        for sql, rows in batch.statements:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK")
        raise _write_error(conn, exc) from None
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _write_error(conn: sqlite3.Connection, exc: sqlite3.Error) -> StoreError:
    path = _file_of(conn)
    return StoreError(f"cannot write to database {path}: {explain(path, exc)}")


def _file_of(conn: sqlite3.Connection) -> str:
    for _, name, filename in conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(filename)
    return "(unknown)"


def prune(conn: sqlite3.Connection, before_day: str) -> None:
    """Delete every day older than ``before_day`` (retention)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql in PRUNE:
            conn.execute(sql, (before_day,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def day_counters(conn: sqlite3.Connection, day: str) -> dict[str, int]:
    """The per-day counters of ``day``."""
    rows = conn.execute("SELECT name, value FROM day_counter WHERE day = ?", (day,))
    return {name: value for name, value in rows}


def records_last_seen(conn: sqlite3.Connection, day: str) -> dict[tuple[str, str], float]:
    """(domain, record) -> when the record was last seen on ``day``."""
    rows = conn.execute(
        "SELECT domain, record, max(last_seen) FROM policy_count WHERE day = ?"
        " GROUP BY domain, record",
        (day,),
    )
    return {(domain, record): seen for domain, record, seen in rows}


def iter_day(conn: sqlite3.Connection, day: str) -> Iterator[dict[str, Any]]:
    """Yield the day's aggregates in the ``export`` shape (shared/INTERFACE.md), sorted."""
    details: dict[bytes, list[dict[str, Any]]] = {}
    for row in conn.execute(
        "SELECT policy_key, result_type, sending_mta_ip, receiving_mx_hostname,"
        " receiving_mx_helo, receiving_ip, additional_information, failure_reason_code,"
        " failed_session_count FROM failure_count WHERE day = ?"
        " ORDER BY result_type, failed_session_count DESC, detail_key",
        (day,),
    ):
        detail = FailureDetail(row[1], *row[2:8])
        details.setdefault(row[0], []).append(detail.to_json(row[8]))
    for row in conn.execute(
        "SELECT policy_key, domain, record, policy_type, policy_domain, policy_string, mx_host,"
        " successful_session_count, failed_session_count FROM policy_count WHERE day = ?"
        " ORDER BY domain, record, policy_type, policy_domain, policy_string, mx_host",
        (day,),
    ):
        policy = Policy(
            policy_type=row[3],
            policy_domain=row[4],
            policy_string=tuple(json.loads(row[5])),
            mx_host=tuple(json.loads(row[6])),
        )
        yield {
            "day": day,
            "domain": row[1],
            "record": row[2],
            "policy": policy.to_json(),
            "summary": {
                "total-successful-session-count": row[7],
                "total-failure-session-count": row[8],
            },
            "failure-details": details.get(row[0], []),
        }
