"""The SQLite store: the contract between the collector (writer) and the reporter (reader).

Schema, version 1 (``PRAGMA user_version``), WAL mode so that readers never block the writer:

``policy_count``: one row per (day, domain, record, policy).
    ``policy_key`` (BLOB, unique): a hash of the canonical key, so upserts need no wide index;
    ``day`` (TEXT ``YYYY-MM-DD``, the UTC day the session was received or happened);
    ``domain`` (the datagram's ``d``: lower-case A-label, no trailing dot);
    ``record`` (the ``_smtp._tls`` TXT record as the MTA saw it, ``''`` when none);
    ``policy_type`` (``sts`` | ``tlsa`` | ``no-policy-found``); ``policy_domain``;
    ``policy_string`` and ``mx_host`` (JSON arrays, in the order received);
    ``successful_session_count``, ``failed_session_count`` (INTEGER);
    ``first_seen``, ``last_seen`` (REAL, Unix time).
``failure_count``: one row per (policy row, failure detail).
    ``policy_key`` (the parent row), ``detail_key`` (hash of the detail), ``day``,
    ``result_type`` (one of RFC 8460's eleven), the six optional RFC 8460 fields as columns
    named with underscores (NULL when unknown), ``failed_session_count``.
``record_seen``: (``day``, ``domain``, ``record``) -> ``last_seen``; the reporter takes the
    record seen last when a domain's record changed during the day.
``day_counter``: (``day``, ``name``) -> ``value``: received, accepted, rejected,
    ``rejected:<reason>``, sessions, failures, failure-details and the decoder's notes.

Writers add to counters with upserts inside one transaction per flush, so a crash loses at most
the flush that was in flight and never leaves half of one. This module does no scheduling and
knows nothing of sockets.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsrpt_reporter.aggregate import Aggregate, PolicyKey
from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.model import FailureDetail, Policy

SCHEMA_VERSION = 1

_MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1
    """
    CREATE TABLE policy_count (
        id INTEGER PRIMARY KEY,
        policy_key BLOB NOT NULL UNIQUE,
        day TEXT NOT NULL,
        domain TEXT NOT NULL,
        record TEXT NOT NULL,
        policy_type TEXT NOT NULL,
        policy_domain TEXT NOT NULL,
        policy_string TEXT NOT NULL,
        mx_host TEXT NOT NULL,
        successful_session_count INTEGER NOT NULL,
        failed_session_count INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE INDEX policy_count_day ON policy_count (day, domain);
    CREATE TABLE failure_count (
        id INTEGER PRIMARY KEY,
        policy_key BLOB NOT NULL,
        detail_key BLOB NOT NULL,
        day TEXT NOT NULL,
        result_type TEXT NOT NULL,
        sending_mta_ip TEXT,
        receiving_mx_hostname TEXT,
        receiving_mx_helo TEXT,
        receiving_ip TEXT,
        additional_information TEXT,
        failure_reason_code TEXT,
        failed_session_count INTEGER NOT NULL,
        UNIQUE (policy_key, detail_key)
    );
    CREATE INDEX failure_count_day ON failure_count (day);
    CREATE TABLE record_seen (
        day TEXT NOT NULL,
        domain TEXT NOT NULL,
        record TEXT NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (day, domain, record)
    );
    CREATE TABLE day_counter (
        day TEXT NOT NULL,
        name TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (day, name)
    );
    """,
)

UPSERT_POLICY = """
INSERT INTO policy_count (policy_key, day, domain, record, policy_type, policy_domain,
    policy_string, mx_host, successful_session_count, failed_session_count, first_seen, last_seen)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (policy_key) DO UPDATE SET
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
ON CONFLICT (policy_key, detail_key) DO UPDATE SET
    failed_session_count = failed_session_count + excluded.failed_session_count
"""

UPSERT_RECORD = """
INSERT INTO record_seen (day, domain, record, last_seen) VALUES (?, ?, ?, ?)
ON CONFLICT (day, domain, record) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)
"""

UPSERT_COUNTER = """
INSERT INTO day_counter (day, name, value) VALUES (?, ?, ?)
ON CONFLICT (day, name) DO UPDATE SET value = value + excluded.value
"""

PRUNE = (
    "DELETE FROM failure_count WHERE day < ?",
    "DELETE FROM policy_count WHERE day < ?",
    "DELETE FROM record_seen WHERE day < ?",
    "DELETE FROM day_counter WHERE day < ?",
)


def policy_key(key: PolicyKey) -> bytes:
    """The stable hash that identifies a (day, domain, record, policy) row."""
    day, domain, record, p = key
    canon = [day, domain, record, p.policy_type, p.policy_domain, p.policy_string, p.mx_host]
    return _hash(json.dumps(canon, ensure_ascii=False).encode())


def detail_key(detail: FailureDetail) -> bytes:
    """The stable hash that identifies a failure detail within its policy row."""
    canon = [detail.result_type, *detail.optional_values()]
    return _hash(json.dumps(canon, ensure_ascii=False).encode())


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(frozen=True)
class WriteBatch:
    """The parameter rows of one flush, built without touching the database."""

    statements: tuple[tuple[str, list[tuple[Any, ...]]], ...]

    def __len__(self) -> int:
        return sum(len(rows) for _, rows in self.statements)


def build_batch(agg: Aggregate) -> WriteBatch:
    """Turn an aggregate into upsert parameter rows (pure)."""
    keys: dict[PolicyKey, bytes] = {}
    policies = []
    for key, c in agg.policies.items():
        pk = keys[key] = policy_key(key)
        day, domain, record, p = key
        policies.append(
            (
                pk,
                day,
                domain,
                record,
                p.policy_type,
                p.policy_domain,
                json.dumps(p.policy_string, ensure_ascii=False),
                json.dumps(p.mx_host, ensure_ascii=False),
                c.successful,
                c.failed,
                c.first_seen,
                c.last_seen,
            )
        )
    details = []
    for (key, detail), n in agg.details.items():
        pk = keys.get(key) or policy_key(key)
        details.append(
            (pk, detail_key(detail), key[0], detail.result_type, *detail.optional_values(), n)
        )
    records = [(*rk, seen) for rk, seen in agg.records.items()]
    counters = [(day, name, n) for (day, name), n in agg.counters.items()]
    return WriteBatch(
        statements=(
            (UPSERT_POLICY, policies),
            (UPSERT_DETAIL, details),
            (UPSERT_RECORD, records),
            (UPSERT_COUNTER, counters),
        )
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
        raise StoreError(f"cannot open database {path}: {exc}") from None
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
        raise StoreError(f"cannot open database {path}: {exc}") from None
    return conn


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
    """Apply a batch in one transaction (synchronous; the daemon does the same via aiosqlite)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in batch.statements:
            if rows:
                conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


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


def iter_day(conn: sqlite3.Connection, day: str) -> Iterator[dict[str, Any]]:
    """Yield the day's aggregates in the ``export`` shape (shared/INTERFACE.md), sorted."""
    details: dict[bytes, list[dict[str, Any]]] = {}
    for row in conn.execute(
        "SELECT policy_key, result_type, sending_mta_ip, receiving_mx_hostname,"
        " receiving_mx_helo, receiving_ip, additional_information, failure_reason_code,"
        " failed_session_count FROM failure_count WHERE day = ?"
        " ORDER BY result_type, failed_session_count DESC, id",
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
