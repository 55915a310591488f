"""Building finished days: read each day from the sources, build and check its reports, store
them with their send times.

A finished UTC day is built once (after ``grace``); each report gets its own send time inside
``spread`` (RFC 8460 §4.1). The arithmetic is :mod:`.timing`'s; this module applies it to the
sources and the state database.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from tlsrpt_reporter import __version__
from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.errors import ConfigError
from tlsrpt_reporter.logs import Progress
from tlsrpt_reporter.report import document as report
from tlsrpt_reporter.report import schema, sources
from tlsrpt_reporter.schedule.timing import day_end, due_days, send_times
from tlsrpt_reporter.store import instance as instance_store
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store import set_aside

log = logging.getLogger("tlsrpt-reporter")

# A reason is stored and shown in status: the first part of the error says what it is.
_MAX_REASON = 500


def choose_record(records: dict[tuple[str, str], float], domain: str) -> str:
    """The record the MTA saw last for ``domain`` ('' when it saw none)."""
    seen = [(last, record) for (d, record), last in records.items() if d == domain and record]
    return max(seen)[1] if seen else ""


def message_id(report_id: str) -> str:
    """The stem (a msg-id without angle brackets) every destination's Message-ID is made from
    (``deliver.plan.destination_message_id``), derived from the Report-ID."""
    left, _, right = report_id.partition("@")
    return f"tlsrpt.{left}@{right}"


def new_instance_id() -> str:
    """A fresh random reporter instance id: 16 hex digits, never derived from the host name."""
    return secrets.token_hex(8)


def instance_for(cfg: ReporterConfig, conn: sqlite3.Connection) -> str:
    """This reporter's instance id (RFC 8460 §4.4: Report-IDs unique across instances):
    ``reporter.instance_id`` when set, else the random one kept in the state database (made
    on first use)."""
    return cfg.instance_id or instance_store.instance_id(conn, new_instance_id)


# --- applying them -----------------------------------------------------------------------


@dataclass
class BuildResult:
    """What building one day did."""

    day: str
    reports: int = 0
    skipped: list[str] = field(default_factory=list)
    capped: int = 0
    # Reports for MX hosts that are no recipient domain of the day (RFC 8460 §1.1).
    host_reports: int = 0
    # (domain, reason) of each report that could not be built; the others go out as usual.
    set_aside: list[tuple[str, str]] = field(default_factory=list)


def build_reports(
    cfg: ReporterConfig,
    day: str,
    data: sources.DayData,
    now: float,
    only: set[str] | None = None,
    *,
    instance: str,
) -> tuple[list[dict[str, Any]], BuildResult]:
    """Build, validate and describe every report of ``day`` (no state written): one per
    recipient domain, and with ``cfg.mx_host_reports`` one per MX host named by a DANE policy
    (merged into that host's own report when it is a recipient domain too); with ``only``,
    just the reports of those domains. Each Report-ID carries ``instance`` (:func:`instance_for`).

    A report that cannot be built or fails the schema is set aside with its reason
    (``BuildResult.set_aside``): one bad input never stops the other reports of the day.
    """
    identity = report.Identity(cfg.organization_name, cfg.contact_info, instance)
    recipients = set(report.domains_of(data.lines, day))
    result = BuildResult(day=day)
    rows: list[dict[str, Any]] = []
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for line in data.lines:
        by_domain.setdefault(line["domain"], []).append(line)
    domains = sorted(recipients)
    if cfg.mx_host_reports:
        # RFC 8460 §1.1: a DANE policy's domain is the MX host; it gets the DANE policies
        # naming it from every recipient domain. A host that is a recipient domain too gets
        # them in that domain's report: one report per (day, domain), as state requires.
        hosts = report.mx_host_lines(data.lines, day)
        for host, lines in hosts.items():
            by_domain.setdefault(host, []).extend(lines)
        domains = sorted(recipients.union(hosts))
    if only is not None:
        domains = [d for d in domains if d in only]
    progress = Progress(f"building {day}", len(domains))
    date = email.utils.format_datetime(dt.datetime.fromtimestamp(now, dt.UTC))
    for done, domain in enumerate(domains, 1):
        progress.step(done)
        if domain in cfg.never_report:
            result.skipped.append(domain)
            continue
        try:
            built = report.build(day, domain, by_domain[domain], identity, cfg.max_failure_details,
                                 sending_mta_ip=cfg.sending_mta_ip)  # fmt: skip
            # Never send what a strict consumer would reject (docs/sender-rules.md §8).
            schema.validate(built.document)
        except ConfigError:
            raise  # the identity is wrong for every report: nothing can be built
        except Exception as exc:  # whatever one report's data does must stay in that report
            reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON]
            result.set_aside.append((domain, reason))
            log.error("report for %s on %s set aside, it cannot be built: %s", domain, day, reason)
            continue
        result.capped += built.totals.capped
        if built.totals.capped:
            log.warning(
                "report for %s on %s: %d failure details over the cap "
                "(reporter.max_failure_details = %d) were left out",
                domain, day, built.totals.capped, cfg.max_failure_details,
            )  # fmt: skip
        if domain not in recipients:
            result.host_reports += 1
        # An MX host that is no recipient domain has no record from the MTA: '' makes the
        # sender look up _smtp._tls.<host> at send time.
        by_datagram = cfg.record_source == "datagram" and domain in recipients
        record = choose_record(data.records, domain) if by_datagram else ""
        rows.append(
            {
                "domain": domain,
                "report_id": built.report_id,
                "message_id": message_id(built.report_id),
                "date": date,
                "filename": built.filename,
                "gzip": built.gzip_bytes,
                "summary": report.summary_text(built, identity),
                "record": record,
                "built": built,
            }
        )
    result.reports = len(rows)
    return rows, result


def build_due(
    cfg: ReporterConfig, conn: sqlite3.Connection, now: float, rng: random.Random
) -> list[BuildResult]:
    """Build every finished day not built yet and store its reports with their send times;
    retry once, by itself, what an older version of the program set aside."""
    retry_set_aside(cfg, conn, now, automatic=True)
    results = []
    own = instance_for(cfg, conn)
    days = sources.days_with_data(cfg.sources, now)
    for day in due_days(days, lambda d: state.is_built(conn, d), now, cfg.grace):
        data = sources.read_day(cfg.sources, day, cfg.source_timeout)
        note = ""
        if data.failed_sources:
            # A source that does not answer postpones the day, up to source_deadline; after
            # that the day is reported with what arrived, and the gap is logged.
            until = day_end(day) + cfg.grace + cfg.source_deadline
            if now < until:
                log.warning(
                    "postponing %s until the sources answer (at most until %s): %s",
                    day, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(until)),
                    "; ".join(data.failed_sources),
                )  # fmt: skip
                continue
            note = "built without: " + "; ".join(data.failed_sources)
            log.error("building %s although sources failed: %s", day, note)
        rows, result = build_reports(cfg, day, data, now, instance=own)
        start = max(now, day_end(day) + cfg.grace)
        for row, when in zip(rows, send_times(len(rows), start, cfg.spread, rng), strict=True):
            row["send_at"] = when
        state.insert_day(
            conn, day, now, rows, note=note,
            set_aside=[(domain, reason, __version__) for domain, reason in result.set_aside],
        )  # fmt: skip
        log.info(
            "built %d reports for %s (%d of them for MX hosts; %d domains never reported to; "
            "%d set aside)",
            result.reports, day, result.host_reports, len(result.skipped), len(result.set_aside),
        )  # fmt: skip
        results.append(result)
    return results


def retry_set_aside(
    cfg: ReporterConfig,
    conn: sqlite3.Connection,
    now: float,
    *,
    day: str | None = None,
    automatic: bool = False,
) -> tuple[int, int]:
    """Build again the reports set aside (of ``day``, or of every day); returns how many now
    built and how many failed again.

    ``automatic`` retries only what an older program version set aside and was not retried yet:
    a new version may carry the fix, and it tries once by itself (``build_due`` does this on
    every pass). Without it, the operator asked (``retry-failed``), and everything is tried.
    """
    waiting = [
        entry
        for entry in set_aside.listed(conn, day)
        if not automatic or (entry.version != __version__ and entry.retries == 0)
    ]
    built = failed = 0
    for retry_day in sorted({entry.day for entry in waiting}):
        domains = {entry.domain for entry in waiting if entry.day == retry_day}
        data = sources.read_day(cfg.sources, retry_day, cfg.source_timeout)
        rows, result = build_reports(
            cfg, retry_day, data, now, only=domains, instance=instance_for(cfg, conn)
        )
        for row in rows:
            row["send_at"] = now
            set_aside.resolve(conn, retry_day, row)
            log.info("report for %s on %s built on retry", row["domain"], retry_day)
        built += len(rows)
        for domain, reason in result.set_aside:
            set_aside.failed_again(conn, retry_day, domain, reason, version=__version__, now=now)
        failed += len(result.set_aside)
        missing = domains - {row["domain"] for row in rows} - {d for d, _ in result.set_aside}
        for domain in missing:  # no data left for it (retention, or the source was corrected)
            set_aside.failed_again(
                conn, retry_day, domain, "no data for this report any more",
                version=__version__, now=now,
            )  # fmt: skip
            failed += 1
    return built, failed
