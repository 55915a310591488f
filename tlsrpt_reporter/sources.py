"""Reading a day's collected data from the reporter's sources (``reporter.sources``).

A source is a collector database path. Lines come out in the ``export`` shape, plus the time
each (domain, record) was last seen, so the reporter can take the record seen last.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tlsrpt_reporter import store
from tlsrpt_reporter.errors import StoreError


@dataclass
class DayData:
    """Everything the sources hold for one day."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    # (domain, record) -> last seen (Unix time)
    records: dict[tuple[str, str], float] = field(default_factory=dict)
    failed_sources: list[str] = field(default_factory=list)


def read_day(sources: Sequence[str], day: str) -> DayData:
    """Read ``day`` from every source; a source that fails is listed, not fatal."""
    data = DayData()
    for source in sources:
        try:
            conn = store.connect(source, create=False)
        except StoreError as exc:
            data.failed_sources.append(f"{source}: {exc}")
            continue
        try:
            data.lines.extend(store.iter_day(conn, day))
            for key, seen in store.records_last_seen(conn, day).items():
                data.records[key] = max(seen, data.records.get(key, seen))
        except sqlite3.Error as exc:
            data.failed_sources.append(f"{source}: {exc}")
        finally:
            conn.close()
    return data


def days_with_data(sources: Sequence[str]) -> list[str]:
    """Every day any readable source holds counters for, sorted."""
    days: set[str] = set()
    for source in sources:
        try:
            conn = store.connect(source, create=False)
        except StoreError:
            continue
        try:
            days.update(row[0] for row in conn.execute("SELECT DISTINCT day FROM day_counter"))
        except sqlite3.Error:
            pass
        finally:
            conn.close()
    return sorted(days)
