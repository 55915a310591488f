"""The faults on this side that the last delivery pass found (the resolver unreachable, the
mail relay down), kept in the state database's ``meta`` table so that ``status`` and its
metrics show them after ``send`` has exited.

Each pass that looked anything up or attempted anything replaces what an earlier one left: a
fault is shown until a pass works again. A pass with nothing to do proves nothing and changes
nothing here. What counts as a fault is the sender's (``deliver.sender``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from tlsrpt_reporter.store.state_db import StateDb
from tlsrpt_reporter.store.tx import transaction

_KEY = "own_problems"


@dataclass(frozen=True)
class OwnProblems:
    """The faults of the pass at Unix time ``at``: kind (``dns``, ``relay``) -> one line."""

    at: float
    problems: dict[str, str] = field(default_factory=dict)


def record(conn: StateDb, at: float, problems: Mapping[str, str]) -> None:
    """Keep ``problems`` as those of the pass at ``at``, replacing the earlier pass's."""
    value = json.dumps({"at": at, "problems": dict(problems)}, ensure_ascii=False)
    with transaction(conn):
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_KEY, value),
        )


def last(conn: StateDb) -> OwnProblems | None:
    """What the last pass that did something found (None: no pass did anything yet)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_KEY,)).fetchone()
    if row is None:
        return None
    try:
        data = json.loads(row[0])
        problems = {str(k): str(v) for k, v in data["problems"].items()}
        return OwnProblems(float(data["at"]), problems)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # written by something else: nothing to show
