"""The reporter's metrics (``status --format prometheus``): the state database, and the sessions
of the last day built.

Read-only summaries of the state database (``store.report_status``) and of one collected day
(read from ``reporter.sources`` with the reader reports are built from, folded by
``summary.model.fold_day``), turned into ``prometheus_client`` metric families and rendered by
``exposition``. Every value is a gauge computed from what is stored now, so the output can be
written by a timer for node-exporter's textfile collector as often as one likes. Labels with a
fixed set of values (statuses, states, error kinds, result types) are always written, zeros
included, so that an alert on ``given-up`` exists before the first report is given up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric

from tlsrpt_reporter import exposition
from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.deliver import error_kinds
from tlsrpt_reporter.exposition import by_label, gauge
from tlsrpt_reporter.model import RESULT_TYPES
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import own_problems, report_status, set_aside, suppressed
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store.state_db import StateDb
from tlsrpt_reporter.summary.model import DayTraffic, fold_day

PREFIX = "tlsrpt_reporter_"
# Delivery states whose last attempt failed; a sent delivery's old error is history.
_FAILED_STATES = ("failed-retrying", "given-up")
# The faults on this side a delivery pass tells apart (deliver.sender), always written.
_OWN_PROBLEMS = ("dns", "relay")


@dataclass(frozen=True)
class DayFigures:
    """The sessions collected on ``day`` (None: no day built yet, every figure zero) and how
    many sources could not be read for it (the figures then count only the others)."""

    day: str | None = None
    traffic: DayTraffic = field(default_factory=lambda: DayTraffic(""))
    unreadable: int = 0


def day_figures(cfg: ReporterConfig, conn: StateDb, day: str | None) -> DayFigures:
    """The sessions of ``day``, or of the last day built into reports, from the sources: the
    same numbers its reports were built from (RFC 8460 §4.4's session counts)."""
    chosen = day or max(report_status.built_days(conn), default=None)
    if chosen is None:
        return DayFigures()
    data = sources.read_day(cfg.sources, chosen, cfg.source_timeout)
    return DayFigures(chosen, fold_day(chosen, data.lines), len(data.failed_sources))


def text(cfg: ReporterConfig, conn: StateDb, now: float, day: str | None) -> str:
    """What ``status --format prometheus`` prints at Unix time ``now`` (of one ``day``)."""
    return exposition.render(families(conn, now, day, day_figures(cfg, conn, day)))


def families(
    conn: StateDb, now: float, day: str | None = None, figures: DayFigures | None = None
) -> list[Metric]:
    """The metrics of the state database ``conn`` at Unix time ``now`` (of one ``day``), and of
    the collected day ``figures`` (zeros when not given)."""
    days, last_build = report_status.built_summary(conn, day)
    reports = _zero_filled(state.REPORT_STATUSES, report_status.report_counts(conn, day))
    deliveries = _zero_filled(state.DELIVERY_STATES, report_status.delivery_counts(conn, day))
    failures: Counter[tuple[str, str]] = Counter()
    for delivery_state, kind, error_text in report_status.failed_deliveries(conn, day):
        failures[(delivery_state, kind or error_kinds.of_text(error_text))] += 1
    oldest = report_status.oldest_unsent_built_at(conn, day)
    found = own_problems.last(conn)
    own = found.problems if found is not None else {}
    errors = GaugeMetricFamily(
        PREFIX + "delivery_errors",
        "Deliveries whose last attempt failed (state failed-retrying or given-up), by the kind "
        "of that failure",
        labels=["kind", "state"],
    )
    for s in _FAILED_STATES:
        for kind in _kinds(failures):
            errors.add_metric([kind, s], failures[(s, kind)])
    return [
        gauge(PREFIX + "days_built", "UTC days built into reports", days),
        gauge(PREFIX + "reports_built", "Reports built, in every status", sum(reports.values())),
        gauge(
            PREFIX + "reports_set_aside",
            "Reports that could not be built and wait for a retry (retry-failed); alert on > 0",
            len(set_aside.listed(conn, day)),
        ),
        _by(
            "reports",
            "Reports by status: pending (destinations not resolved yet), sending, delivered "
            "(a destination accepted it), given-up, no-destination",
            "status",
            reports,
        ),
        _by(
            "deliveries",
            "Deliveries (report, destination pairs) by state, the outcome so far: pending, "
            "failed-retrying, sent, given-up, skipped, suppressed",
            "state",
            deliveries,
        ),
        errors,
        _by(
            "own_problems",
            "Faults on this side the last delivery pass found (1: present), by kind: dns (the "
            "resolver unreachable), relay (the mail relay down or stuck); alert on > 0",
            "kind",
            {k: int(k in own) for k in [*_OWN_PROBLEMS, *sorted(set(own) - set(_OWN_PROBLEMS))]},
        ),
        gauge(
            PREFIX + "suppressed_destinations",
            "Destinations suppressed now because every delivery to them failed for "
            "reporter.dead_after_days days (tlsrpt-reporter unsuppress lifts it)",
            len(suppressed.listed(conn, now)),
        ),
        gauge(
            PREFIX + "last_build_timestamp_seconds",
            "Unix time the last day was built (0: never)",
            last_build or 0.0,
        ),
        gauge(
            PREFIX + "last_successful_send_timestamp_seconds",
            "Unix time a destination last accepted a report (0: never)",
            report_status.last_accepted(conn, day) or 0.0,
        ),
        gauge(
            PREFIX + "oldest_unsent_report_age_seconds",
            "Seconds since the oldest report still pending or sending was built (0: none)",
            max(0.0, now - oldest) if oldest is not None else 0.0,
        ),
        *_day_families(figures or DayFigures()),
    ]


def _day_families(figures: DayFigures) -> list[Metric]:
    t = figures.traffic
    # RFC 8460 §4.3's result types, zeros included; one from a newer collector still shows.
    types = [*RESULT_TYPES, *sorted(set(t.result_types) - set(RESULT_TYPES))]
    of_day = "of the last day built (status --day: of that day)"
    return [
        gauge(
            PREFIX + "day_start_timestamp_seconds",
            "Unix time the UTC day of the day_ metrics began: the last day built (status "
            "--day: that day); 0: no day built yet",
            timing.day_end(figures.day) - 86400.0 if figures.day else 0.0,
        ),
        gauge(
            PREFIX + "day_sessions", f"TLS sessions, successful and failed, {of_day}", t.sessions
        ),
        gauge(PREFIX + "day_failed_sessions", f"Failed TLS sessions {of_day}", t.failures),
        _by(
            "day_result_type_failed_sessions",
            f"Failed TLS sessions {of_day} by RFC 8460 result type (failure details left out "
            "by collectd.max_failure_details are in day_failed_sessions only)",
            "result_type",
            {r: t.result_types.get(r, 0) for r in types},
        ),
        gauge(
            PREFIX + "day_sources_unreadable",
            "Sources (reporter.sources) that could not be read for the day_ metrics, which then "
            "count only the others; alert on > 0",
            figures.unreadable,
        ),
    ]


def _by(name: str, help_text: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    return by_label(GaugeMetricFamily(PREFIX + name, help_text, labels=[label]), values.items())


def _zero_filled(known: tuple[str, ...], found: dict[str, int]) -> dict[str, int]:
    # The known names first, in their order, zeros included; a name written by a newer
    # version than this one still shows up, after them.
    return {**dict.fromkeys(known, 0), **found}


def _kinds(failures: Counter[tuple[str, str]]) -> list[str]:
    # A kind written by a newer version than this one still shows up.
    extra = sorted({k for _, k in failures} - set(error_kinds.KINDS))
    return [*error_kinds.KINDS, *extra]
