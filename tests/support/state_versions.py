"""Taking a state database back to an older schema version, for the migration tests: what each
version added is dropped again (newest first), so that migrating adds it once more."""

from __future__ import annotations

import sqlite3


def undo_version_6(raw: sqlite3.Connection) -> None:
    """Drop what schema version 6 -> 7 added: the leases of reporters sharing a database."""
    for table in ("report", "delivery"):
        raw.execute(f"ALTER TABLE {table} DROP COLUMN lease_holder")
        raw.execute(f"ALTER TABLE {table} DROP COLUMN lease_until")
    raw.execute("DROP TABLE lease")
