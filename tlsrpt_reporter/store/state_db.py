"""What the store modules need of a state database connection, whichever database it is.

``reporter.db`` is a file path (SQLite: the default, nothing to set up) or a ``postgresql://``
URL (PostgreSQL: several reporters share it, docs/fleet.md). Both connections take the same
calls: ``sqlite3.Connection`` as it is, ``store.pg_state.PgState`` by translating them. Store
code is typed with :class:`StateDb` and asks :func:`dialect` in the few places where the two
databases need different statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol


class StateDb(Protocol):
    """A state database connection in autocommit mode."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any:
        """Run one statement; the result iterates rows and has fetchone/fetchall."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any:
        """Run one statement for each of ``rows``."""
        ...

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


def dialect(conn: StateDb) -> str:
    """``"sqlite"`` or ``"postgresql"``."""
    return str(getattr(conn, "dialect", "sqlite"))


def is_postgresql(location: str) -> bool:
    """Whether ``reporter.db`` names a PostgreSQL database rather than a SQLite file (the
    store may not import the configuration's own test of the same prefixes)."""
    return str(location).startswith(("postgresql://", "postgres://"))


def exists(location: str) -> bool:
    """Whether there is a state database to read at ``location`` yet: a SQLite file that
    exists, or any PostgreSQL database (its tables are created on first use)."""
    return is_postgresql(location) or Path(location).exists()
