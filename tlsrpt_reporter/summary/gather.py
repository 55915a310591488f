"""Reading what the summary needs: the collected days of the window from the reporter's
sources (``report.sources``, the same reader reports are built with) and the state database's
reports and deliveries (``store.summary_queries``). Derivation is ``compute``'s.

Read-only: a state database that does not exist is not created (nothing was built yet).
"""

from __future__ import annotations

import sqlite3

from tlsrpt_reporter import utc
from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store import state_db, suppressed
from tlsrpt_reporter.store import summary_queries as queries
from tlsrpt_reporter.summary import compute
from tlsrpt_reporter.summary.model import DayTraffic, Summary, fold_day


def gather(
    cfg: ReporterConfig, now: float, *, days: int = 30, day: str | None = None, top: int = 50
) -> Summary:
    """The summary of the ``days`` days ending today (UTC), or ending ``day`` and detailing it."""
    window = compute.Window.ending(day or utc.day(now), days, day)
    traffic, failed = read_traffic(cfg, window, now)
    return compute.summarize(
        traffic,
        read_state(cfg.db, window, now),
        window,
        now=now,
        grace=cfg.grace,
        spread=cfg.spread,
        top=top,
        failed_sources=failed,
    )


def read_traffic(
    cfg: ReporterConfig, window: compute.Window, now: float
) -> tuple[list[DayTraffic], list[str]]:
    """The collected days of ``window``, and the sources that could not be read."""
    traffic, failed = [], []
    for d in sources.days_with_data(cfg.sources, now):
        # Only real days: a garbled one must not slip into the window by string order.
        if compute.is_day(d) and window.first <= d <= window.last:
            data = sources.read_day(cfg.sources, d, cfg.source_timeout)
            failed += data.failed_sources
            traffic.append(fold_day(d, data.lines))
    return traffic, failed


def read_state(db: str, window: compute.Window, now: float) -> compute.StateFacts:
    """The state database's facts about ``window`` (empty when there is no database yet), and
    the destinations suppressed at ``now``."""
    if not state_db.exists(db):
        return compute.StateFacts()
    conn = state.connect(db)
    try:
        first, last = window.first, window.last
        facts = compute.StateFacts(
            built=queries.built_days(conn, first, last),
            statuses=queries.report_statuses_by_day(conn, first, last),
            retrying=queries.retrying_by_day(conn, first, last),
            destinations=queries.destinations(conn, first, last),
            set_aside=queries.set_aside_count(conn, first, last),
            due=queries.due(conn),
            suppressed=suppressed.listed(conn, now),
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read state database {db}: {exc}") from None
    finally:
        conn.close()
    return facts
