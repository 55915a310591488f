"""Connecting to the fleet's PostgreSQL (docs/fleet.md) with psycopg 3's asyncio API.

This module owns how a connection is opened: from a ``postgresql://`` URL or a libpq conninfo
(never with a password: libpq reads it from ``~/.pgpass``, ``PGPASSFILE`` or the service file,
and the configuration refuses one), with a connect timeout and a statement timeout, in
autocommit mode (every transaction is an explicit ``conn.transaction()``); how the server is
named in messages; libpq's error as one line; and running such code from the synchronous
reporter (:func:`run`).

psycopg is an optional extra: it is imported only here and by the fleet modules, inside their
functions, so an install without it (a single host on SQLite) never loads it, and asking for
the fleet without it is a :class:`StoreError` that names the extra to install.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from tlsrpt_reporter.errors import StoreError

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

CONNECT_TIMEOUT = 10
APPLICATION_NAME = "tlsrpt-reporter"
MISSING = (
    "PostgreSQL support is not installed: install tlsrpt-rfc8460-reporter[postgresql] "
    "(pip install 'tlsrpt-rfc8460-reporter[postgresql]' in the same virtualenv)"
)


def require() -> None:
    """Raise StoreError naming the extra to install when psycopg is missing."""
    try:
        import psycopg  # noqa: F401, PLC0415
    except ImportError:
        raise StoreError(MISSING) from None


def describe(conninfo: str) -> str:
    """The server and database ``conninfo`` names, for messages (it holds no password)."""
    require()
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        params = conninfo_to_dict(conninfo)
    except Exception:  # libpq's parser: any failure means "cannot tell"
        return "PostgreSQL (unparsable address)"
    if "service" in params and "host" not in params:
        return f"PostgreSQL service {params['service']}"
    host = params.get("host") or "the local socket"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or "(the user's)"
    return f"PostgreSQL {host} port {port}, database {dbname}"


def one_line(exc: BaseException) -> str:
    """libpq's message (several indented lines) as one line."""
    return "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())


async def connect(
    conninfo: str,
    *,
    statement_timeout: float,
    connect_timeout: float = CONNECT_TIMEOUT,
    purpose: str = "",
) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    """An autocommit connection; StoreError naming the server and libpq's error when none.

    The address's own ``connect_timeout`` and ``application_name`` win over ours; every
    statement is cut off after ``statement_timeout`` seconds (a locked table must not hang a
    timer's run forever).
    """
    require()
    import psycopg  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: PLC0415

    try:
        given = conninfo_to_dict(conninfo)
        extra = {
            key: value
            for key, value in (
                ("connect_timeout", str(max(1, round(connect_timeout)))),
                ("application_name", f"{APPLICATION_NAME} {purpose}".strip()),
            )
            if key not in given
        }
        full = make_conninfo(conninfo, **extra)
    except psycopg.ProgrammingError as exc:
        raise StoreError(
            f"cannot use the PostgreSQL address {conninfo!r}: {one_line(exc)}"
        ) from None
    try:
        conn = await psycopg.AsyncConnection.connect(full, autocommit=True)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {describe(conninfo)}: {one_line(exc)}") from None
    try:
        millis = str(max(1, round(statement_timeout * 1000)))
        await conn.execute("SELECT set_config('statement_timeout', %s, false)", (millis,))
    except psycopg.Error as exc:
        await conn.close()
        raise StoreError(f"{describe(conninfo)}: {one_line(exc)}") from None
    return conn


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end from synchronous code, on a thread of its own with a fresh event
    loop: the reporter reads its sources synchronously, sometimes from inside a running loop
    (``run`` builds days between its asynchronous delivery passes)."""
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="postgresql")
    try:
        return pool.submit(asyncio.run, work).result()
    finally:
        # Interrupted (the reporter stopping), the thread finishes on its own: its statements
        # end at their timeout at the latest.
        pool.shutdown(wait=False)
