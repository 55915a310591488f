"""The reporter's state database as Prometheus metrics (``status --format prometheus``).

Read-only summaries of the state database (``store.report_status``), turned into
``exposition`` families. Every value is a gauge computed from what the database holds now, so
the output can be written by a timer for node-exporter's textfile collector as often as one
likes. Labels with a fixed set of values (statuses, states, error kinds) are always written,
zeros included, so that an alert on ``given-up`` exists before the first report is given up.
"""

from __future__ import annotations

import sqlite3
from collections import Counter

from tlsrpt_reporter.deliver import error_kinds
from tlsrpt_reporter.exposition import Family, Sample, gauge
from tlsrpt_reporter.store import report_status, set_aside
from tlsrpt_reporter.store import reports as state

PREFIX = "tlsrpt_reporter_"
# Delivery states whose last attempt failed; a sent delivery's old error is history.
_FAILED_STATES = ("failed-retrying", "given-up")


def families(conn: sqlite3.Connection, now: float, day: str | None = None) -> list[Family]:
    """The metrics of the state database ``conn`` at Unix time ``now`` (of one ``day``)."""
    days, last_build = report_status.built_summary(conn, day)
    reports = _zero_filled(state.REPORT_STATUSES, report_status.report_counts(conn, day))
    deliveries = _zero_filled(state.DELIVERY_STATES, report_status.delivery_counts(conn, day))
    last_accepted = report_status.last_accepted(conn, day) or 0.0
    failures: Counter[tuple[str, str]] = Counter()
    for delivery_state, kind, text in report_status.failed_deliveries(conn, day):
        failures[(delivery_state, kind or error_kinds.of_text(text))] += 1
    oldest = report_status.oldest_unsent_built_at(conn, day)
    return [
        gauge(PREFIX + "days_built", "UTC days built into reports", days),
        gauge(PREFIX + "reports_built", "Reports built, in every status", sum(reports.values())),
        gauge(
            PREFIX + "reports_set_aside",
            "Reports that could not be built and wait for a retry (retry-failed); alert on > 0",
            len(set_aside.listed(conn, day)),
        ),
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


def _zero_filled(known: tuple[str, ...], found: dict[str, int]) -> dict[str, int]:
    # The known names first, in their order, zeros included; a name written by a newer
    # version than this one still shows up, after them.
    return {**dict.fromkeys(known, 0), **found}


def _kinds(failures: Counter[tuple[str, str]]) -> list[str]:
    # A kind written by a newer version than this one still shows up.
    extra = sorted({k for _, k in failures} - set(error_kinds.KINDS))
    return [*error_kinds.KINDS, *extra]
