"""What building a day looks up per report domain, gathered once per day.

A provider reports to hundreds of thousands of domains a day: every per-domain look-up must
be a dict access into an index built in one pass over the day's lines and records, never a
scan of them (a scan per domain made a day's build quadratic in its domains). Pure code: the
day's data in, the index out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.report import document as report
from tlsrpt_reporter.report.sources import DayData


@dataclass(frozen=True)
class DayIndex:
    """One day's data, indexed by report domain."""

    # The recipient domains of the day (a report domain that is none is an MX host's).
    recipients: frozenset[str]
    # Every report domain, sorted: the recipient domains and, with mx_host_reports, the MX
    # hosts named by a DANE policy.
    domains: list[str]
    # Report domain -> its lines (an MX host's: the DANE lines naming it, relabelled).
    lines: dict[str, list[dict[str, Any]]]
    # Recipient domain -> the record the MTA saw last (absent: it saw none).
    records: dict[str, str]


def latest_records(records: Mapping[tuple[str, str], float]) -> dict[str, str]:
    """Domain -> the record seen last, from (domain, record) -> last seen; one pass. An empty
    record (the MTA found none) is never chosen; of two seen at the same time, the greater
    string wins, so the choice does not depend on the order of the sources."""
    best: dict[str, tuple[float, str]] = {}
    for (domain, record), last in records.items():
        if record and (domain not in best or (last, record) > best[domain]):
            best[domain] = (last, record)
    return {domain: record for domain, (_, record) in best.items()}


def index_day(day: str, data: DayData, *, mx_host_reports: bool) -> DayIndex:
    """Index ``data``'s lines of ``day`` by report domain (lines of other days are left out, as
    :func:`report.build` would ignore them)."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for line in data.lines:
        if line["day"] == day:
            lines.setdefault(line["domain"], []).append(line)
    recipients = frozenset(lines)
    if mx_host_reports:
        # RFC 8460 §1.1: a DANE policy's domain is the MX host; it gets the DANE policies
        # naming it from every recipient domain. A host that is a recipient domain too gets
        # them in that domain's report: one report per (day, domain), as state requires.
        for host, host_lines in report.mx_host_lines(data.lines, day).items():
            lines.setdefault(host, []).extend(host_lines)
    return DayIndex(recipients, sorted(lines), lines, latest_records(data.records))
