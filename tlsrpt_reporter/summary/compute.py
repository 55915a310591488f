"""Deriving the summary from what was read: the collected days and the state database's facts.

Pure: no I/O; the clock comes in as ``now``. Which domains changed is decided here, and when the
next report goes out, from the schedule's own arithmetic (``schedule.timing``) and the due
times stored in the state database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from tlsrpt_reporter import utc
from tlsrpt_reporter.report.result_types import ADVICE
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store.summary_queries import DestinationCounts, Due
from tlsrpt_reporter.store.suppressed import Suppressed
from tlsrpt_reporter.summary.model import (
    Change,
    DayRow,
    DayTraffic,
    DomainRow,
    NextSend,
    Reports,
    ResultTypeRow,
    Summary,
    rate,
)


@dataclass(frozen=True)
class StateFacts:
    """What the state database says about the window (all empty without one)."""

    built: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    retrying: dict[str, int] = field(default_factory=dict)
    destinations: list[DestinationCounts] = field(default_factory=list)
    set_aside: int = 0
    due: Due | None = None
    suppressed: list[Suppressed] = field(default_factory=list)


@dataclass(frozen=True)
class Window:
    """The days summarised, [``first``, ``last``], and the day detailed (None: the last finished
    day with sessions)."""

    first: str
    last: str
    day: str | None = None

    @classmethod
    def ending(cls, last: str, days: int, day: str | None = None) -> Window:
        """The ``days`` days that end with ``last``."""
        first = dt.date.fromisoformat(last) - dt.timedelta(days=days - 1)
        return cls(first.isoformat(), last, day)

    def days(self) -> list[str]:
        """Every day of the window, oldest first."""
        start, end = dt.date.fromisoformat(self.first), dt.date.fromisoformat(self.last)
        return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def is_day(value: str) -> bool:
    """Whether ``value`` is a day in the ``YYYY-MM-DD`` form."""
    try:
        return dt.date.fromisoformat(value).isoformat() == value
    except ValueError:
        return False


def summarize(
    traffic: Sequence[DayTraffic],
    facts: StateFacts,
    window: Window,
    *,
    now: float,
    grace: float,
    spread: float,
    top: int,
    failed_sources: Sequence[str] = (),
) -> Summary:
    """The summary of ``window``; lists of domains, changes and destinations keep their first
    ``top`` entries (the counts say how many there are)."""
    by_day = {t.day: t for t in traffic}
    day = window.day or _latest_day(traffic, now)
    focus = by_day.get(day or "", DayTraffic(day or ""))
    domains = _domain_rows(traffic, focus)
    newly, recovered = _changes(traffic, focus)
    sessions = sum(t.sessions for t in traffic)
    failures = sum(t.failures for t in traffic)
    return Summary(
        generated_at=now,
        first_day=window.first,
        last_day=window.last,
        day=day,
        sessions=sessions,
        failures=failures,
        failure_rate=rate(failures, sessions),
        day_sessions=focus.sessions,
        day_failures=focus.failures,
        day_failure_rate=rate(focus.failures, focus.sessions),
        days=[_day_row(d, by_day.get(d), facts, now) for d in window.days()],
        domain_count=len(domains),
        failing_domain_count=sum(1 for row in domains if row.failures),
        domains=domains[:top],
        result_types=_result_type_rows(traffic, focus),
        newly_failing=newly[:top],
        recovered=recovered[:top],
        reports=_reports(facts),
        destination_count=len(facts.destinations),
        destinations=sorted(
            facts.destinations,
            key=lambda d: (-(d.given_up + d.retrying), -d.reports, d.destination),
        )[:top],
        next_send=next_send(facts.due, by_day, facts.built, now=now, grace=grace, spread=spread),
        failed_sources=list(dict.fromkeys(failed_sources)),
        suppressed=list(facts.suppressed),
    )


def _latest_day(traffic: Sequence[DayTraffic], now: float) -> str | None:
    """The last finished day with sessions (the day of the latest reports); the running day
    only when no other has sessions: a part of a day compares badly with whole ones."""
    with_sessions = [t.day for t in traffic if t.sessions]
    finished = [d for d in with_sessions if timing.day_end(d) <= now]
    return max(finished or with_sessions, default=None)


def _day_row(day: str, traffic: DayTraffic | None, facts: StateFacts, now: float) -> DayRow:
    t = traffic or DayTraffic(day)
    statuses = facts.statuses.get(day, {})
    retrying = facts.retrying.get(day, 0)
    return DayRow(
        day=day,
        sessions=t.sessions,
        failures=t.failures,
        failure_rate=rate(t.failures, t.sessions),
        finished=timing.day_end(day) <= now,
        built=day in facts.built,
        reports=sum(statuses.values()),
        delivered=statuses.get("delivered", 0),
        retrying=retrying,
        unsent=statuses.get("pending", 0) + statuses.get("sending", 0) - retrying,
        given_up=statuses.get("given-up", 0),
        no_destination=statuses.get("no-destination", 0),
    )


def _domain_rows(traffic: Sequence[DayTraffic], focus: DayTraffic) -> list[DomainRow]:
    """Every domain of the window, the most failed sessions first."""
    totals: dict[str, list[int]] = {}
    kinds: dict[str, dict[str, int]] = {}
    for t in traffic:
        for domain, (sessions, failures) in t.domains.items():
            total = totals.setdefault(domain, [0, 0])
            total[0] += sessions
            total[1] += failures
        for domain, per_type in t.domain_result_types.items():
            mine = kinds.setdefault(domain, {})
            for result_type, n in per_type.items():
                mine[result_type] = mine.get(result_type, 0) + n
    rows = []
    for domain, (sessions, failures) in totals.items():
        day_sessions, day_failures = focus.domains.get(domain, (0, 0))
        per_type = kinds.get(domain, {})
        rows.append(
            DomainRow(
                domain=domain,
                sessions=sessions,
                failures=failures,
                failure_rate=rate(failures, sessions),
                day_sessions=day_sessions,
                day_failures=day_failures,
                result_types=dict(sorted(per_type.items(), key=lambda kv: (-kv[1], kv[0]))),
            )
        )
    rows.sort(key=lambda r: (-r.failures, -r.failure_rate, -r.sessions, r.domain))
    return rows


def _result_type_rows(traffic: Sequence[DayTraffic], focus: DayTraffic) -> list[ResultTypeRow]:
    totals: dict[str, int] = {}
    domains: dict[str, set[str]] = {}
    for t in traffic:
        for result_type, n in t.result_types.items():
            totals[result_type] = totals.get(result_type, 0) + n
        for domain, per_type in t.domain_result_types.items():
            for result_type in per_type:
                domains.setdefault(result_type, set()).add(domain)
    rows = []
    for result_type, n in totals.items():
        advice = ADVICE.get(result_type)
        rows.append(
            ResultTypeRow(
                result_type=result_type,
                failures=n,
                day_failures=focus.result_types.get(result_type, 0),
                domains=len(domains.get(result_type, ())),
                cause=advice.cause if advice else "",
                fix=advice.fix if advice else "",
            )
        )
    rows.sort(key=lambda r: (-r.failures, r.result_type))
    return rows


def _changes(traffic: Sequence[DayTraffic], focus: DayTraffic) -> tuple[list[Change], list[Change]]:
    """(newly failing, recovered): each domain with sessions on the focus day, against its
    previous day with sessions in the window. Newly failing: failures now and none then (or
    not seen before); recovered: failures then and none now."""
    earlier = sorted((t for t in traffic if t.day < focus.day), key=lambda t: t.day, reverse=True)
    newly, recovered = [], []
    for domain, (sessions, failures) in focus.domains.items():
        if not sessions:
            continue
        previous = next((t for t in earlier if t.domains.get(domain, (0, 0))[0]), None)
        before = previous.domains[domain] if previous else [0, 0]
        change = Change(domain, sessions, failures, previous.day if previous else None, *before)
        if failures and not before[1]:
            newly.append(change)
        elif not failures and before[1]:
            recovered.append(change)
    newly.sort(key=lambda c: (-c.failures, c.domain))
    recovered.sort(key=lambda c: (-c.previous_failures, c.domain))
    return newly, recovered


def _reports(facts: StateFacts) -> Reports:
    totals: dict[str, int] = {}
    for statuses in facts.statuses.values():
        for status, n in statuses.items():
            totals[status] = totals.get(status, 0) + n
    return Reports(
        built=sum(totals.values()),
        delivered=totals.get("delivered", 0),
        sending=totals.get("sending", 0),
        retrying=sum(facts.retrying.values()),
        pending=totals.get("pending", 0),
        given_up=totals.get("given-up", 0),
        no_destination=totals.get("no-destination", 0),
        set_aside=facts.set_aside,
    )


def next_send(
    due: Due | None,
    collected: dict[str, DayTraffic],
    built: dict[str, int],
    *,
    now: float,
    grace: float,
    spread: float,
) -> NextSend:
    """The earliest of: a stored report's send time, a delivery's next attempt, and the build of
    the next day (its end plus ``grace``, RFC 8460 §4.1), whose reports go out over ``spread``.
    A time already past means "at the next ``send`` run"."""
    options: list[NextSend] = []
    if due is not None and due.report_at is not None:
        what = f"{due.reports} stored reports to resolve and send"
        options.append(NextSend(due.report_at, None, what))
    if due is not None and due.delivery_at is not None:
        what = f"{due.deliveries} deliveries to try, some of them again after a failure"
        options.append(NextSend(due.delivery_at, None, what))
    # The oldest collected day not built yet is built first; without one, today is next.
    unbuilt = [d for d in sorted(collected) if d not in built and collected[d].sessions]
    day = unbuilt[0] if unbuilt else utc.day(now)
    ready = timing.ready_at(day, grace)
    what = f"the reports of {day}, built when it ends plus reporter.grace"
    if not unbuilt:
        what += " (if sessions are collected)"
    options.append(NextSend(ready, ready + spread, what))
    return min(options, key=lambda o: o.at or 0.0)
