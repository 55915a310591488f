"""The summary's data: frozen rows that the text, JSON and HTML forms all render, and the fold of
one day's collected ``export`` lines into sessions and failures per domain and result type.

Pure: no I/O, no clock. Every number a renderer shows is a field here, so the three forms cannot
disagree. Names follow RFC 8460 where it has one (``result_type``, sessions, failures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tlsrpt_reporter import utc
from tlsrpt_reporter.store.summary_queries import DestinationCounts
from tlsrpt_reporter.store.suppressed import Suppressed


def rate(failures: int, sessions: int) -> float:
    """The share of failed sessions, 0.0 when there were none."""
    return failures / sessions if sessions else 0.0


@dataclass
class DayTraffic:
    """One day of collected sessions: in total, per recipient domain and per result type."""

    day: str
    sessions: int = 0
    failures: int = 0
    # domain -> [sessions, failures]
    domains: dict[str, list[int]] = field(default_factory=dict)
    # result type -> failed sessions, over the day and per domain
    result_types: dict[str, int] = field(default_factory=dict)
    domain_result_types: dict[str, dict[str, int]] = field(default_factory=dict)


def fold_day(day: str, lines: Iterable[Mapping[str, Any]]) -> DayTraffic:
    """Sessions and failures of ``day`` from its ``export`` lines (one per domain, record and
    policy; a session counts under one policy, so the lines add up)."""
    out = DayTraffic(day)
    for line in lines:
        summary = line["summary"]
        ok = int(summary["total-successful-session-count"])
        failed = int(summary["total-failure-session-count"])
        domain = line["domain"]
        counts = out.domains.setdefault(domain, [0, 0])
        counts[0] += ok + failed
        counts[1] += failed
        out.sessions += ok + failed
        out.failures += failed
        per_domain = out.domain_result_types.setdefault(domain, {})
        for detail in line.get("failure-details", []):
            result_type, n = detail["result-type"], int(detail["failed-session-count"])
            out.result_types[result_type] = out.result_types.get(result_type, 0) + n
            per_domain[result_type] = per_domain.get(result_type, 0) + n
    return out


@dataclass(frozen=True)
class DayRow:
    """One UTC day of the window: its sessions and the fate of its reports. ``built`` is False
    for a day not built (yet); ``finished`` False for the day still running."""

    day: str
    sessions: int
    failures: int
    failure_rate: float
    finished: bool
    built: bool
    reports: int
    delivered: int
    retrying: int
    unsent: int
    given_up: int
    no_destination: int


@dataclass(frozen=True)
class DomainRow:
    """One recipient domain: its sessions over the window and on the summary's day, and its
    failed sessions per result type over the window (most first)."""

    domain: str
    sessions: int
    failures: int
    failure_rate: float
    day_sessions: int
    day_failures: int
    result_types: dict[str, int]


@dataclass(frozen=True)
class ResultTypeRow:
    """Failed sessions of one result type, and what it likely means (``report.result_types``:
    the same words as ``inspect``; empty for a type outside RFC 8460's list)."""

    result_type: str
    failures: int
    day_failures: int
    domains: int
    cause: str
    fix: str


@dataclass(frozen=True)
class Change:
    """A domain whose state on the summary's day differs from its previous day with sessions
    (``previous_day`` None: the domain was not seen before in the window)."""

    domain: str
    sessions: int
    failures: int
    previous_day: str | None
    previous_sessions: int
    previous_failures: int


@dataclass(frozen=True)
class Reports:
    """The reports of the window's days by status (``reports.REPORT_STATUSES``); ``retrying``
    are those among ``sending`` that wait for another attempt after a failure."""

    built: int
    delivered: int
    sending: int
    retrying: int
    pending: int
    given_up: int
    no_destination: int
    set_aside: int


@dataclass(frozen=True)
class NextSend:
    """When the next report goes out (``at`` None: nothing is scheduled), until when when its
    send times are spread over a window, and what it is."""

    at: float | None
    until: float | None
    what: str


@dataclass(frozen=True)
class Summary:
    """Everything ``summary`` shows. ``day`` is the day the per-day details are about (the last
    finished day of the window with sessions, or the one asked for; None: no sessions)."""

    generated_at: float
    first_day: str
    last_day: str
    day: str | None
    sessions: int
    failures: int
    failure_rate: float
    day_sessions: int
    day_failures: int
    day_failure_rate: float
    days: list[DayRow]
    domain_count: int
    failing_domain_count: int
    domains: list[DomainRow]
    result_types: list[ResultTypeRow]
    newly_failing: list[Change]
    recovered: list[Change]
    reports: Reports
    destination_count: int
    destinations: list[DestinationCounts]
    next_send: NextSend
    failed_sources: list[str]
    # Dead destinations that get no report for now (deliver.dead), the oldest first.
    suppressed: list[Suppressed] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing collected in the window and no report built: nothing to show."""
        return self.sessions == 0 and self.reports.built == 0


def as_json(summary: Summary) -> dict[str, Any]:
    """The summary as plain JSON values (``summary --format json``)."""
    out = dataclasses.asdict(summary)
    out["empty"] = summary.empty
    return out


def printable(value: str, limit: int = 300) -> str:
    """``value`` as one printable line: domains, destinations and error texts come from DNS
    and remote servers, and must not drive the terminal (nor grow a page without bound)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in value)
    return text if len(text) <= limit else text[:limit] + "..."


def percent(share: float) -> str:
    """A failure rate as shown: two decimals, so that one failure in 10,000 is not 0 %."""
    return f"{share * 100:.2f} %"


def next_send_text(next_send: NextSend, now: float) -> str:
    """When the next report goes out, in words."""
    if next_send.at is None:
        return "nothing is scheduled"
    if next_send.at <= now:
        when = "due now (at the next send run)"
    else:
        when = utc.minute(next_send.at)
        if next_send.until is not None and next_send.until > next_send.at:
            when += f" to {utc.minute(next_send.until)}"
    return f"{when}: {next_send.what}"
