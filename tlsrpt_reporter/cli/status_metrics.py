"""The reporter's state database as Prometheus metrics (``status --format prometheus``).

Read-only queries over the tables of ``state``, turned into ``exposition`` families. Every
value is a gauge computed from what the database holds now, so the output can be written by a
timer for node-exporter's textfile collector as often as one likes. Labels with a fixed set of
values (statuses, states, error kinds) are always written, zeros included, so that an alert on
``given-up`` exists before the first report is given up.
"""

from __future__ import annotations

import sqlite3
from collections import Counter

from tlsrpt_reporter.deliver import error_kinds
from tlsrpt_reporter.exposition import Family, Sample, gauge
from tlsrpt_reporter.store import reports as state

PREFIX = "tlsrpt_reporter_"
# Delivery states whose last attempt failed; a sent delivery's old error is history.
_FAILED_STATES = ("failed-retrying", "given-up")

# ``?1`` is the day to restrict to, NULL for every day.
_DAYS = "SELECT count(*), max(built_at) FROM built_day WHERE ?1 IS NULL OR day = ?1"
_REPORTS = "SELECT status, count(*) FROM report WHERE ?1 IS NULL OR day = ?1 GROUP BY status"
_DELIVERIES = (
    "SELECT delivery.state, count(*), max(delivery.accepted_at) FROM delivery"
    " JOIN report ON report.id = delivery.report WHERE ?1 IS NULL OR report.day = ?1"
    " GROUP BY delivery.state"
)
_FAILURES = (
    "SELECT delivery.state, delivery.error_kind, delivery.last_error FROM delivery"
    " JOIN report ON report.id = delivery.report WHERE (?1 IS NULL OR report.day = ?1)"
    " AND delivery.state IN ('failed-retrying', 'given-up')"
    " AND (delivery.error_kind != '' OR delivery.last_error != '')"
)
_OLDEST_UNSENT = (
    "SELECT min(built_day.built_at) FROM report JOIN built_day ON built_day.day = report.day"
    " WHERE (?1 IS NULL OR report.day = ?1) AND report.status IN ('pending', 'sending')"
)


def families(conn: sqlite3.Connection, now: float, day: str | None = None) -> list[Family]:
    """The metrics of the state database ``conn`` at Unix time ``now`` (of one ``day``)."""
    args = (day,)
    days, last_build = conn.execute(_DAYS, args).fetchone()
    reports = _zero_filled(state.REPORT_STATUSES, conn.execute(_REPORTS, args).fetchall())
    last_accepted = 0.0
    delivery_rows = []
    for delivery_state, count, accepted in conn.execute(_DELIVERIES, args):
        delivery_rows.append((delivery_state, count))
        last_accepted = max(last_accepted, accepted or 0.0)
    deliveries = _zero_filled(state.DELIVERY_STATES, delivery_rows)
    failures: Counter[tuple[str, str]] = Counter()
    for delivery_state, kind, text in conn.execute(_FAILURES, args):
        failures[(delivery_state, kind or error_kinds.of_text(text))] += 1
    (oldest,) = conn.execute(_OLDEST_UNSENT, args).fetchone()
    return [
        gauge(PREFIX + "days_built", "UTC days built into reports", days),
        gauge(PREFIX + "reports_built", "Reports built, in every status", sum(reports.values())),
        Family(
            PREFIX + "reports",
            "gauge",
            "Reports by status: pending (destinations not resolved yet), sending, delivered "
            "(a destination accepted it), given-up, no-destination",
            tuple(Sample(n, (("status", s),)) for s, n in reports.items()),
        ),
        Family(
            PREFIX + "deliveries",
            "gauge",
            "Deliveries (report, destination pairs) by state",
            tuple(Sample(n, (("state", s),)) for s, n in deliveries.items()),
        ),
        Family(
            PREFIX + "delivery_errors",
            "gauge",
            "Deliveries whose last attempt failed (state failed-retrying or given-up), by the "
            "kind of that failure",
            tuple(
                Sample(failures[(s, kind)], (("kind", kind), ("state", s)))
                for s in _FAILED_STATES
                for kind in _kinds(failures)
            ),
        ),
        gauge(
            PREFIX + "last_build_timestamp_seconds",
            "Unix time the last day was built (0: never)",
            last_build or 0.0,
        ),
        gauge(
            PREFIX + "last_delivery_timestamp_seconds",
            "Unix time a destination last accepted a report (0: never)",
            last_accepted,
        ),
        gauge(
            PREFIX + "oldest_unsent_report_age_seconds",
            "Seconds since the oldest report still pending or sending was built (0: none)",
            max(0.0, now - oldest) if oldest is not None else 0.0,
        ),
    ]


def _zero_filled(known: tuple[str, ...], rows: list[tuple[str, int]]) -> dict[str, int]:
    counts = dict.fromkeys(known, 0)
    for name, count in rows:
        counts[name] = counts.get(name, 0) + count
    return counts


def _kinds(failures: Counter[tuple[str, str]]) -> list[str]:
    # A kind written by a newer version than this one still shows up.
    extra = sorted({k for _, k in failures} - set(error_kinds.KINDS))
    return [*error_kinds.KINDS, *extra]
