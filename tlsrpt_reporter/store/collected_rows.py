"""The rows of the collector database's aggregates: their keys (:func:`policy_key`,
:func:`detail_key`), the upserts that add to them, turning an aggregate into a batch of those
upserts (:func:`build_batch`) and running a batch inside the caller's transaction
(:func:`execute_batch`).

``collected`` re-exports all of it (callers write through that module); it lives apart so that
``collected_schema``'s migrations can write rows with the same keys without importing
``collected``, which imports ``collected_schema``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.model import FailureDetail, Policy
from tlsrpt_reporter.wire.aggregate import Aggregate, PolicyKey
from tlsrpt_reporter.wire.recent import Recent

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


def policy_key(key: PolicyKey) -> bytes:
    """The stable hash that identifies a (day, domain, record, policy) row."""
    cached = _POLICY_KEYS.get(key)
    if cached is not None:
        return cached
    day, domain, record, p = key
    # repr() of a tuple of strings is unambiguous (quotes and separators are escaped) and fast.
    canon = (day, domain, record, p.policy_type, p.policy_domain, p.policy_string, p.mx_host)
    digest = _hash(repr(canon).encode("utf-8", "surrogatepass"))
    _POLICY_KEYS.put(key, digest)
    return digest


def detail_key(detail: FailureDetail) -> bytes:
    """The stable hash that identifies a failure detail within its policy row."""
    canon = (detail.result_type, *detail.optional_values())
    return _hash(repr(canon).encode("utf-8", "surrogatepass"))


def _one(_key: PolicyKey) -> int:
    return 1


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


# The same keys come back flush after flush: hashing them once saves most of a flush's work.
# Kept while they recur (a day's keys of busy domains), within 2 x 8,192 keys.
_POLICY_KEYS: Recent[PolicyKey, bytes] = Recent(8192, 8192, _one)

Rows = Iterable[tuple[Any, ...]]
# One statement of a write batch and its parameter rows (``executemany``).
Statement = tuple[str, Rows]


@dataclass(frozen=True)
class WriteBatch:
    """The upserts of one flush; rows are produced lazily, so a large flush never holds a
    second copy of the aggregate in memory. A batch can be written once."""

    statements: tuple[Statement, ...]


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


def execute_batch(conn: sqlite3.Connection, batch: WriteBatch) -> None:
    """Run a batch's upserts on ``conn``, inside a transaction the caller holds."""
    for sql, rows in batch.statements:
        conn.executemany(sql, rows)


_DETAILS = (
    "SELECT policy_key, result_type, sending_mta_ip, receiving_mx_hostname, receiving_mx_helo,"
    " receiving_ip, additional_information, failure_reason_code, failed_session_count"
    " FROM failure_count WHERE day = ?"
)
_DETAILS_SORTED = _DETAILS + " ORDER BY result_type, failed_session_count DESC, detail_key"
_POLICIES = (
    "SELECT policy_key, domain, record, policy_type, policy_domain, policy_string, mx_host,"
    " successful_session_count, failed_session_count, first_seen, last_seen"
    " FROM policy_count WHERE day = ?"
)
_POLICIES_SORTED = (
    _POLICIES + " ORDER BY domain, record, policy_type, policy_domain, policy_string, mx_host"
)


def stored_lines(
    conn: sqlite3.Connection, day: str, *, ordered: bool = True
) -> Iterator[tuple[dict[str, Any], float, float]]:
    """The day's rows as ``export`` lines, each with its first and last sighting; sorted (the
    ``export`` order) unless ``ordered`` is False (the migration needs no order)."""
    details: dict[bytes, list[dict[str, Any]]] = {}
    for row in conn.execute(
        _DETAILS_SORTED if ordered else _DETAILS,
        (day,),
    ):
        detail = FailureDetail(row[1], *row[2:8])
        details.setdefault(row[0], []).append(detail.to_json(row[8]))
    for row in conn.execute(
        _POLICIES_SORTED if ordered else _POLICIES,
        (day,),
    ):
        policy = Policy(
            policy_type=row[3],
            policy_domain=row[4],
            policy_string=tuple(json.loads(row[5])),
            mx_host=tuple(json.loads(row[6])),
        )
        line = {
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
        yield line, row[9], row[10]
