"""What the reporter reads from the fleet's PostgreSQL (docs/fleet.md): a day's aggregates
summed across the hosts that pushed it, the records last seen, and which hosts pushed it.

The sum happens in SQL: rows of the same policy (the collector's ``policy_key``, a hash of the
day, domain, record and policy) or failure detail from different hosts add up, so a day reads
as one collector that saw every host's sessions would have stored it. Lines come out in the
``export`` shape (``collected.iter_day``). One read-only snapshot per day, so that a push
committing meanwhile is either wholly in or wholly out. The reporter's role owns the fleet
tables: connecting, it creates or upgrades them first (``fleet_schema.migrate``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.model import FailureDetail, Policy
from tlsrpt_reporter.store import fleet_schema, pg_connect

if TYPE_CHECKING:
    import psycopg

_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_DETAILS = (
    "SELECT policy_key, result_type, sending_mta_ip, receiving_mx_hostname, receiving_mx_helo,"
    " receiving_ip, additional_information, failure_reason_code,"
    " sum(failed_session_count)::bigint AS n"
    " FROM fleet_failure WHERE day = %s"
    " GROUP BY policy_key, detail_key, result_type, sending_mta_ip, receiving_mx_hostname,"
    " receiving_mx_helo, receiving_ip, additional_information, failure_reason_code"
    " ORDER BY result_type, n DESC, detail_key"
)
_POLICIES = (
    "SELECT policy_key, domain, record, policy_type, policy_domain, policy_string, mx_host,"
    " sum(successful_session_count)::bigint, sum(failed_session_count)::bigint"
    " FROM fleet_policy WHERE day = %s"
    " GROUP BY policy_key, domain, record, policy_type, policy_domain, policy_string, mx_host"
    " ORDER BY domain, record, policy_type, policy_domain, policy_string, mx_host"
)
_RECORDS = (
    "SELECT domain, record, max(last_seen) FROM fleet_policy WHERE day = %s GROUP BY domain, record"
)
_PUSHED = "SELECT host, complete FROM pushed_day WHERE day = %s"
# As a collector database's days: those with counters (an idle host's empty days are not).
_DAYS = "SELECT DISTINCT day FROM fleet_counter ORDER BY day"
_ITERSIZE = 10_000
# Connecting must not take the whole statement timeout: a server that is down says so at once,
# one that does not answer is given this long.
MAX_CONNECT = 30.0


@dataclass
class FleetDay:
    """One day of the fleet: its lines (summed across hosts), (domain, record) -> last seen,
    and host -> whether its push of the day was complete."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    records: dict[tuple[str, str], float] = field(default_factory=dict)
    pushed: dict[str, bool] = field(default_factory=dict)


async def read_day(conninfo: str, day: str, timeout: float) -> FleetDay:
    """Everything the fleet at ``conninfo`` holds for ``day``, each statement cut off after
    ``timeout`` seconds; StoreError naming the server and libpq's error when it fails."""
    import psycopg  # noqa: PLC0415 (connect() has checked that it is installed)

    conn = await _connect(conninfo, timeout)
    async with conn:
        try:
            return await _read_day(conn, day)
        except psycopg.Error as exc:
            raise StoreError(
                f"{pg_connect.describe(conninfo)}: {pg_connect.one_line(exc)}"
            ) from None


async def days(conninfo: str, timeout: float) -> list[str]:
    """Every day some host pushed data for, in order; StoreError when the server fails."""
    import psycopg  # noqa: PLC0415

    conn = await _connect(conninfo, timeout)
    async with conn:
        try:
            cur = await conn.execute(_DAYS)
            return [day.isoformat() for (day,) in await cur.fetchall()]
        except psycopg.Error as exc:
            raise StoreError(
                f"{pg_connect.describe(conninfo)}: {pg_connect.one_line(exc)}"
            ) from None


async def _connect(conninfo: str, timeout: float) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    conn = await pg_connect.connect(
        conninfo,
        statement_timeout=timeout,
        connect_timeout=min(timeout, MAX_CONNECT),
        purpose="reporter",
    )
    try:
        await fleet_schema.migrate(conn, conninfo)
    except BaseException:
        await conn.close()
        raise
    return conn


async def _read_day(conn: psycopg.AsyncConnection[tuple[Any, ...]], day: str) -> FleetDay:
    date = dt.date.fromisoformat(day)
    out = FleetDay()
    async with conn.transaction():
        await conn.execute(_SNAPSHOT)
        cur = await conn.execute(_PUSHED, (date,))
        out.pushed = {host: bool(complete) for host, complete in await cur.fetchall()}
        cur = await conn.execute(_RECORDS, (date,))
        out.records = {(d, r): float(seen) for d, r, seen in await cur.fetchall()}
        details: dict[bytes, list[dict[str, Any]]] = {}
        # Server-side cursors: a large day streams instead of arriving whole twice.
        async with conn.cursor(name="fleet_details") as rows:
            rows.itersize = _ITERSIZE
            await rows.execute(_DETAILS, (date,))
            async for row in rows:
                detail = FailureDetail(row[1], *row[2:8])
                details.setdefault(bytes(row[0]), []).append(detail.to_json(int(row[8])))
        async with conn.cursor(name="fleet_policies") as rows:
            rows.itersize = _ITERSIZE
            await rows.execute(_POLICIES, (date,))
            async for row in rows:
                out.lines.append(_line(day, row, details.get(bytes(row[0]), [])))
    return out


def _line(day: str, row: tuple[Any, ...], details: list[dict[str, Any]]) -> dict[str, Any]:
    policy = Policy(
        policy_type=row[3],
        policy_domain=row[4],
        policy_string=tuple(json.loads(row[5])),
        mx_host=tuple(json.loads(row[6])),
    )
    return {
        "day": day,
        "domain": row[1],
        "record": row[2],
        "policy": policy.to_json(),
        "summary": {
            "total-successful-session-count": int(row[7]),
            "total-failure-session-count": int(row[8]),
        },
        "failure-details": details,
    }
