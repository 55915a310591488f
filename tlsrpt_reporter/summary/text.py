"""The summary in the terminal: rich tables, one per question.

Every value that comes from data (domains, destinations, error texts) goes in as a ``Text`` made
by :func:`model.printable`, never as markup: a destination like ``mailto:[bold]x`` or an error
with escape sequences must print as itself.
"""

from __future__ import annotations

from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tlsrpt_reporter.summary.model import (
    Change,
    Summary,
    next_send_text,
    percent,
    printable,
)
from tlsrpt_reporter.utc import minute as utc_time

# Wide enough for the tables when the output is a pipe or a file (rich would take 80).
_PIPE_WIDTH = 160
NOTHING = "nothing collected yet"


def render(summary: Summary, out: TextIO) -> None:
    """Write the summary's tables to ``out``."""
    console = Console(
        file=out,
        width=None if out.isatty() else _PIPE_WIDTH,
        markup=False,
        highlight=False,
        emoji=False,
    )
    window = f"{summary.first_day} to {summary.last_day}"
    console.print(f"TLS-RPT summary, {window} (made {utc_time(summary.generated_at)})")
    for failure in summary.failed_sources:
        console.print(Text(f"warning: source unreadable: {printable(failure)}"))
    if summary.empty:
        console.print(f"{NOTHING}: no sessions in the sources and no report built in {window}")
        return
    console.print(_overview(summary))
    console.print(_days(summary))
    console.print(_domains(summary))
    if summary.result_types:
        console.print(_result_types(summary))
    console.print(_changes("newly failing", summary.newly_failing, summary.day))
    console.print(_changes("recovered", summary.recovered, summary.day))
    console.print(_reports(summary))
    if summary.destinations:
        console.print(_destinations(summary))
    if summary.suppressed:
        console.print(_suppressed(summary))
    console.print(f"next report: {next_send_text(summary.next_send, summary.generated_at)}")


def _table(title: str, *columns: str) -> Table:
    """A table whose columns are right-aligned (numbers) unless named with a leading ``<``."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in columns:
        left = name.startswith("<")
        table.add_column(name.lstrip("<"), justify="left" if left else "right", overflow="fold")
    return table


def _n(value: int) -> str:
    return f"{value:,}"


def _overview(s: Summary) -> Table:
    day = s.day or "-"
    table = _table("sessions", "<", "sessions", "failed", "failure rate")
    table.add_row(f"{s.first_day} to {s.last_day}", _n(s.sessions), _n(s.failures),
                  percent(s.failure_rate))  # fmt: skip
    table.add_row(day, _n(s.day_sessions), _n(s.day_failures), percent(s.day_failure_rate))
    table.caption = (
        f"{_n(s.domain_count)} recipient domains, {_n(s.failing_domain_count)} with failures"
    )
    table.caption_justify = "left"
    return table


def _days(s: Summary) -> Table:
    table = _table("per day", "<day", "sessions", "failed", "failure rate", "reports",
                   "delivered", "retrying", "unsent", "given up", "no destination")  # fmt: skip
    for row in s.days:
        if not (row.sessions or row.reports or row.built):
            continue
        day = row.day if row.finished else f"{row.day} (running)"
        built = row.built or row.reports
        table.add_row(
            day, _n(row.sessions), _n(row.failures), percent(row.failure_rate),
            _n(row.reports) if built else "not built",
            *(_n(v) for v in (row.delivered, row.retrying, row.unsent, row.given_up,
                              row.no_destination)),
        )  # fmt: skip
    return table


def _domains(s: Summary) -> Table:
    shown = (
        f" (the {len(s.domains)} with the most failures)" if s.domain_count > len(s.domains) else ""
    )
    table = _table(f"recipient domains{shown}", "<domain", "sessions", "failed", "failure rate",
                   f"sessions {s.day}", f"failed {s.day}", "<result types")  # fmt: skip
    for row in s.domains:
        kinds = ", ".join(f"{k} {_n(v)}" for k, v in row.result_types.items())
        table.add_row(
            Text(printable(row.domain)), _n(row.sessions), _n(row.failures),
            percent(row.failure_rate), _n(row.day_sessions), _n(row.day_failures), kinds,
        )  # fmt: skip
    return table


def _result_types(s: Summary) -> Table:
    table = _table("failures by result type", "<result type", "failed", f"failed {s.day}",
                   "domains", "<likely cause")  # fmt: skip
    for row in s.result_types:
        cause = row.cause or "not an RFC 8460 result type"
        table.add_row(Text(printable(row.result_type)), _n(row.failures), _n(row.day_failures),
                      _n(row.domains), cause)  # fmt: skip
    return table


def _changes(title: str, changes: list[Change], day: str | None) -> Table:
    table = _table(f"{title} on {day}", "<domain", "sessions", "failed", "<previous day",
                   "sessions before", "failed before")  # fmt: skip
    for c in changes:
        table.add_row(Text(printable(c.domain)), _n(c.sessions), _n(c.failures),
                      c.previous_day or "not seen before", _n(c.previous_sessions),
                      _n(c.previous_failures))  # fmt: skip
    if not changes:
        table.caption = "none"
        table.caption_justify = "left"
    return table


def _reports(s: Summary) -> Table:
    r = s.reports
    table = _table("reports", "built", "delivered", "sending", "retrying", "pending",
                   "given up", "no destination", "set aside")  # fmt: skip
    table.add_row(*(_n(v) for v in (r.built, r.delivered, r.sending, r.retrying, r.pending,
                                     r.given_up, r.no_destination, r.set_aside)))  # fmt: skip
    return table


def _suppressed(s: Summary) -> Table:
    table = _table("suppressed destinations (every delivery failed; `unsuppress DEST` releases)",
                   "<destination", "<until", "failed days", "<last error")  # fmt: skip
    for e in s.suppressed:
        table.add_row(Text(printable(e.destination)), utc_time(e.until), _n(e.failed_days),
                      Text(printable(e.reason, 160)))  # fmt: skip
    return table


def _destinations(s: Summary) -> Table:
    more = s.destination_count > len(s.destinations)
    shown = f" (the {len(s.destinations)} with the most trouble)" if more else ""
    table = _table(f"per destination{shown}", "<destination", "reports", "delivered",
                   "retrying", "waiting", "given up", "<last error")  # fmt: skip
    for d in s.destinations:
        error = Text(printable(d.last_error, 160))
        table.add_row(Text(printable(d.destination)), _n(d.reports), _n(d.sent), _n(d.retrying),
                      _n(d.pending), _n(d.given_up), error)  # fmt: skip
    return table
