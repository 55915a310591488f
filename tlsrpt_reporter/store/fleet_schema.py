"""The fleet's PostgreSQL tables (docs/fleet.md): the contract between the MTA hosts' ``push``
and the reporter, their migrations, and who may write which rows.

Schema, version 1 (the ``schema_version`` table, one row). Each pushed table mirrors a table of
the collector's SQLite database (``collected_schema``) with a ``host`` column in front, and is
keyed by (``day``, ``host``, the SQLite key): a push replaces a host's rows of a day, never adds
to them.

``fleet_host``: (``host``) -> ``role``, the PostgreSQL role allowed to push that host's rows.
    Filled by the database's administrator (docs/fleet.md); the reporter never writes it.
``fleet_policy``: ``policy_count``'s rows: ``day`` (DATE), ``host``, ``policy_key`` (BYTEA,
    the collector's hash), ``domain``, ``record``, ``policy_type``, ``policy_domain``,
    ``policy_string`` and ``mx_host`` (JSON arrays as text), the two session counts,
    ``first_seen`` and ``last_seen`` (Unix time).
``fleet_failure``: ``failure_count``'s rows: ``day``, ``host``, ``policy_key``, ``detail_key``,
    ``result_type``, the six optional RFC 8460 fields (NULL when unknown),
    ``failed_session_count``.
``fleet_counter``: ``day_counter``'s rows: ``day``, ``host``, ``name``, ``value``.
``pushed_day``: (``host``, ``day``) -> ``pushed_at`` (when the push that wrote them read the
    collector's database), ``complete`` (that read began after the day had ended, plus a
    margin for the collector's last write: ``fleet_push.COMPLETE_AFTER``), ``digest`` (of the
    rows pushed: an unchanged day is not written again).

Row-level security on the four pushed tables: a role other than the owner sees and writes only
the rows of the hosts ``fleet_host`` maps to it, so a push role can write its own host's rows
and nobody else's. The owner (the reporter's role, which runs the migrations) reads everything.
The members of the group role :data:`PUSH_GROUP` get the table privileges a push needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.store.pg_connect import describe, one_line

if TYPE_CHECKING:
    import psycopg

SCHEMA_VERSION = 1
# The group role whose members may push, as the grants below name it (docs/fleet.md creates it
# before the first migration).
PUSH_GROUP = "tlsrpt_push"

# One migration at a time, whoever starts it (pg_advisory_xact_lock's key).
_LOCK = 0x746C7372  # "tlsr"

_V1 = """
CREATE TABLE schema_version (version integer NOT NULL);
INSERT INTO schema_version VALUES (0);
CREATE TABLE fleet_host (host text PRIMARY KEY, role text NOT NULL);
CREATE TABLE fleet_policy (
    day date NOT NULL,
    host text NOT NULL,
    policy_key bytea NOT NULL,
    domain text NOT NULL,
    record text NOT NULL,
    policy_type text NOT NULL,
    policy_domain text NOT NULL,
    policy_string text NOT NULL,
    mx_host text NOT NULL,
    successful_session_count bigint NOT NULL,
    failed_session_count bigint NOT NULL,
    first_seen double precision NOT NULL,
    last_seen double precision NOT NULL,
    PRIMARY KEY (day, host, policy_key)
);
CREATE TABLE fleet_failure (
    day date NOT NULL,
    host text NOT NULL,
    policy_key bytea NOT NULL,
    detail_key bytea NOT NULL,
    result_type text NOT NULL,
    sending_mta_ip text,
    receiving_mx_hostname text,
    receiving_mx_helo text,
    receiving_ip text,
    additional_information text,
    failure_reason_code text,
    failed_session_count bigint NOT NULL,
    PRIMARY KEY (day, host, policy_key, detail_key)
);
CREATE TABLE fleet_counter (
    day date NOT NULL,
    host text NOT NULL,
    name text NOT NULL,
    value bigint NOT NULL,
    PRIMARY KEY (day, host, name)
);
CREATE TABLE pushed_day (
    host text NOT NULL,
    day date NOT NULL,
    pushed_at timestamptz NOT NULL,
    complete boolean NOT NULL,
    digest bytea NOT NULL,
    PRIMARY KEY (host, day)
);
ALTER TABLE fleet_policy ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_host ON fleet_policy
    USING (host IN (SELECT host FROM fleet_host WHERE role = current_user))
    WITH CHECK (host IN (SELECT host FROM fleet_host WHERE role = current_user));
ALTER TABLE fleet_failure ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_host ON fleet_failure
    USING (host IN (SELECT host FROM fleet_host WHERE role = current_user))
    WITH CHECK (host IN (SELECT host FROM fleet_host WHERE role = current_user));
ALTER TABLE fleet_counter ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_host ON fleet_counter
    USING (host IN (SELECT host FROM fleet_host WHERE role = current_user))
    WITH CHECK (host IN (SELECT host FROM fleet_host WHERE role = current_user));
ALTER TABLE pushed_day ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_host ON pushed_day
    USING (host IN (SELECT host FROM fleet_host WHERE role = current_user))
    WITH CHECK (host IN (SELECT host FROM fleet_host WHERE role = current_user));
GRANT SELECT ON schema_version, fleet_host TO tlsrpt_push;
GRANT SELECT, INSERT, DELETE ON fleet_policy, fleet_failure, fleet_counter TO tlsrpt_push;
GRANT SELECT, INSERT, UPDATE, DELETE ON pushed_day TO tlsrpt_push;
"""

# Step n takes version n to n + 1, in one transaction.
_MIGRATIONS = (_V1,)


async def version(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> int:
    """The schema version of the fleet's database (0: no fleet tables yet)."""
    cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute("SELECT max(version) FROM schema_version")
    row = await cur.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def migrate(conn: psycopg.AsyncConnection[tuple[Any, ...]], conninfo: str) -> None:
    """Bring the fleet tables to :data:`SCHEMA_VERSION` (the reporter's role, their owner).

    Each step is one transaction under an advisory lock, so two reporters starting at once
    migrate once. StoreError says what to fix (roles missing, not the owner)."""

    current = await version(conn)
    _refuse_newer(current)
    if current >= SCHEMA_VERSION:
        return
    # The lock is the session's, taken before each transaction begins: a transaction that
    # waited for it inside would see the catalog as it was when it began, without the tables
    # another reporter has just created, and fail to create them again.
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
    try:
        await _steps(conn, conninfo)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))


async def _steps(conn: psycopg.AsyncConnection[tuple[Any, ...]], conninfo: str) -> None:
    """The migration steps still missing, each in one transaction (under the caller's lock)."""
    import psycopg  # noqa: PLC0415

    for target in range(await version(conn), SCHEMA_VERSION):
        try:
            async with conn.transaction():
                await conn.execute(_MIGRATIONS[target].encode())
                await conn.execute("UPDATE schema_version SET version = %s", (target + 1,))
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot create the fleet tables (schema version {target + 1}) in "
                f"{describe(conninfo)}: {one_line(exc)}; the reporter's role must own the "
                f'database and the role {PUSH_GROUP} must exist (docs/fleet.md, "Setting up '
                'PostgreSQL")'
            ) from None


async def require_current(conn: psycopg.AsyncConnection[tuple[Any, ...]], conninfo: str) -> None:
    """StoreError unless the fleet tables are at this program's version (``push`` cannot
    create them: the reporter does, as their owner)."""
    current = await version(conn)
    _refuse_newer(current)
    if current < SCHEMA_VERSION:
        raise StoreError(
            f"{describe(conninfo)} has no fleet tables of schema version {SCHEMA_VERSION} yet "
            f"(it is at {current}): the reporter creates them when it first reads the fleet "
            "(run `tlsrpt-reporter status` on the reporter's host; docs/fleet.md)"
        )


def _refuse_newer(current: int) -> None:
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the fleet tables are at schema version {current}, newer than this program's "
            f"({SCHEMA_VERSION}): upgrade tlsrpt-reporter"
        )
