"""``tlsrpt-reporter unsuppress``, and the dead destinations as ``status`` shows them.

A destination to which every delivery failed on ``reporter.dead_after_days`` days in a row is
suppressed (``deliver.dead``, ``store.suppressed``); ``unsuppress DEST`` (or ``--all``) lifts
that at once, and the deliveries it held back that are still inside ``reporter.retry_for`` are
due at the next send. It needs no process lock: a running ``run`` sees the release at its next
pass.
"""

from __future__ import annotations

import time
from typing import Any

from tlsrpt_reporter import utc
from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.errors import InputError
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store import state_db
from tlsrpt_reporter.store import suppressed as store
from tlsrpt_reporter.store.state_db import StateDb

EXIT_OK = 0


def command(config_path: str | None, destination: str | None, every: bool) -> int:
    """Release ``destination`` (or, with ``every``, every suppressed one)."""
    if (destination is None) == (not every):
        raise InputError("unsuppress takes a destination (as `status` lists it) or --all")
    cfg = load_config(config_path).reporter
    if not state_db.exists(cfg.db):  # nothing was sent yet: nothing is suppressed
        chosen = [] if every else [_match(destination or "", [])]
        revived = 0
    else:
        now = time.time()
        conn = state.connect(cfg.db)
        try:
            listed = [s.destination for s in store.listed(conn, now)]
            chosen = listed if every else [_match(destination or "", listed)]
            revived = store.release(conn, chosen, now, cfg.retry_for) if chosen else 0
        finally:
            conn.close()
    if not chosen:
        print("no destination is suppressed")
    for name in chosen:
        print(f"released {name}: the next send tries it")
    if revived:
        print(f"{revived} deliveries it held back are due again")
    return EXIT_OK


def _match(given: str, listed: list[str]) -> str:
    """The suppressed destination ``given`` names: exactly, or an address without ``mailto:``."""
    for candidate in (given, f"mailto:{given}"):
        if candidate in listed:
            return candidate
    shown = ", ".join(listed[:5]) + (f" (and {len(listed) - 5} more)" if len(listed) > 5 else "")
    raise InputError(
        f"unsuppress: {given!r} is not suppressed; suppressed now: {shown or 'none'} "
        "(give it as `tlsrpt-reporter status` lists it)"
    )


def listed(conn: StateDb) -> list[store.Suppressed]:
    """The suppressions in force now."""
    return store.listed(conn, time.time())


def day_entries(conn: StateDb, day: str) -> list[dict[str, Any]]:
    """``day``'s deliveries that were suppressed, per destination (``status --json``)."""
    return [
        {"destination": dest, "reports": n, "detail": detail}
        for dest, n, detail in store.suppressed_deliveries(conn, day)
    ]


def status_lines(entries: list[store.Suppressed]) -> list[str]:
    """The suppressed destinations as ``status`` prints them after the days."""
    if not entries:
        return []
    lines = [f"suppressed destinations ({len(entries)}), no report goes to them until the date:"]
    for e in entries:
        lines.append(
            f"    {_printable(e.destination)}  until {utc.minute(e.until)} "
            f"(since {utc.minute(e.since)}, "
            f"{e.failed_days} failed days): {_printable(e.reason)}"
        )
    lines.append("    `tlsrpt-reporter unsuppress DEST` (or --all) releases them now")
    return lines


def _printable(value: str, limit: int = 300) -> str:
    # Destinations and errors come from DNS and remote servers: not for the terminal to run.
    text = "".join(ch if ch.isprintable() else "?" for ch in value)
    return text if len(text) <= limit else text[:limit] + "..."
