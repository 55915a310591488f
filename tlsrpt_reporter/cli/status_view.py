"""What ``status`` says besides its table, and ``send`` after its summary: that nothing was
collected or built yet, the faults on this side the last delivery pass found (the resolver
unreachable, the relay down: ``store.own_problems``), and when the next report goes out.

The next report's time is ``summary``'s computation (``summary.compute.next_send``), fed with
what it needs: the state database's due times and the collected days not built yet. Reads
only: a state database that does not exist is not created.
"""

from __future__ import annotations

import time

from tlsrpt_reporter import utc
from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.config.source_syntax import is_command
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.store import own_problems, report_status, state_db
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store.state_db import StateDb
from tlsrpt_reporter.summary import compute, gather
from tlsrpt_reporter.summary.model import next_send_text
from tlsrpt_reporter.utc import minute as utc_time


def open_state(db: str) -> StateDb:
    """The state database, or an empty one in memory while there is none: ``status`` before
    the first build shows zeros rather than failing, and leaves no file behind."""
    return state.connect(db if state_db.exists(db) else ":memory:")


def next_report_line(cfg: ReporterConfig, now: float) -> str:
    """When the next report goes out, and what it is, in one line."""
    today = utc.day(now)
    yesterday = utc.day(now - 86400)
    facts = gather.read_state(cfg.db, compute.Window(yesterday, today), now)
    # Only a day not built yet can add a send time (built days' are in the state database);
    # yesterday stays unbuilt until it ends plus reporter.grace.
    first = today if yesterday in facts.built else yesterday
    traffic, _ = gather.read_traffic(cfg, compute.Window(first, today), now)
    collected = {t.day: t for t in traffic}
    nxt = compute.next_send(
        facts.due, collected, facts.built, now=now, grace=cfg.grace, spread=cfg.spread
    )
    return f"next report: {next_send_text(nxt, now)}"


def nothing_built_line(cfg: ReporterConfig, now: float) -> str:
    """Why the table is empty: nothing collected, or collected but not built yet."""
    if any(is_command(source) for source in cfg.sources):
        # Only running the export would tell: not for a status line.
        return "nothing built yet"
    days = [d for d in sources.days_with_data(cfg.sources, now) if compute.is_day(d)]
    if not days:
        return f"nothing collected yet (sources: {', '.join(cfg.sources)})"
    if len(days) == 1:
        return f"nothing built yet; sessions collected on 1 day, {days[0]}"
    return f"nothing built yet; sessions collected on {len(days)} days, {days[0]} to {days[-1]}"


def problem_lines(conn: StateDb) -> list[str]:
    """The faults on this side the last delivery pass found, one line each."""
    found = own_problems.last(conn)
    if found is None:
        return []
    when = utc_time(found.at)
    return [f"problem at the last delivery pass ({when}): {p}" for p in found.problems.values()]


def status_lines(cfg: ReporterConfig, conn: StateDb) -> list[str]:
    """The lines ``status`` prints after its table."""
    now = time.time()
    lines = [] if report_status.built_days(conn) else [nothing_built_line(cfg, now)]
    return [*lines, *problem_lines(conn), next_report_line(cfg, now)]
