"""Building one day's reports a batch at a time: each report built, checked against the schema
and described for the state database, in batches of a bounded size.

The day is indexed once (:mod:`.day_index`), so each report costs the same however many
domains the day has, and no more than one batch of built reports is held at a time: the caller
stores (or signs, or writes) a batch and lets it go before the next is built. No state is
written here.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.errors import ConfigError
from tlsrpt_reporter.logs import Progress
from tlsrpt_reporter.report import document as report
from tlsrpt_reporter.report import schema
from tlsrpt_reporter.report.sources import DayData
from tlsrpt_reporter.schedule.day_index import DayIndex, index_day

log = logging.getLogger("tlsrpt-reporter")

# A reason is stored and shown in status: the first part of the error says what it is.
_MAX_REASON = 500


def message_id(report_id: str) -> str:
    """The stem (a msg-id without angle brackets) every destination's Message-ID is made from
    (``deliver.plan.destination_message_id``), derived from the Report-ID."""
    left, _, right = report_id.partition("@")
    return f"tlsrpt.{left}@{right}"


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


@dataclass
class Batch:
    """Up to a batch size of built reports (the rows the state database stores, each with its
    ``built`` report) and the (domain, reason) of the reports of the same domains set aside."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    set_aside: list[tuple[str, str]] = field(default_factory=list)


class DayBuild:
    """The reports of one day (with ``only``: of those domains; ``skip``: without those),
    built by :meth:`batches`; :attr:`result` counts what was built so far."""

    def __init__(
        self,
        cfg: ReporterConfig,
        day: str,
        data: DayData,
        now: float,
        *,
        instance: str,
        only: set[str] | None = None,
        skip: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        self.cfg = cfg
        self.day = day
        self.identity = report.Identity(cfg.organization_name, cfg.contact_info, instance)
        self.index: DayIndex = index_day(day, data, mx_host_reports=cfg.mx_host_reports)
        self.result = BuildResult(day=day)
        self.date = email.utils.format_datetime(dt.datetime.fromtimestamp(now, dt.UTC))
        never = frozenset(cfg.never_report)  # a set: a long list costs no scan per domain
        self.domains: list[str] = []
        for domain in self.index.domains:
            if (only is not None and domain not in only) or domain in skip:
                continue
            if domain in never:
                self.result.skipped.append(domain)
            else:
                self.domains.append(domain)

    def batches(self, size: int) -> Iterator[Batch]:
        """The day's reports in domain order, ``size`` domains' worth at a time (a batch holds
        fewer reports when some are set aside)."""
        progress = Progress(f"building {self.day}", len(self.domains))
        for start in range(0, len(self.domains), size):
            batch = Batch()
            for done, domain in enumerate(self.domains[start : start + size], start + 1):
                progress.step(done)
                row = self._row(domain, batch)
                if row is not None:
                    batch.rows.append(row)
            self.result.reports += len(batch.rows)
            self.result.set_aside += batch.set_aside
            yield batch

    def _row(self, domain: str, batch: Batch) -> dict[str, Any] | None:
        """The stored row of ``domain``'s report; None when it is set aside (into ``batch``)."""
        cfg, day = self.cfg, self.day
        try:
            built = report.build(
                day, domain, self.index.lines[domain], self.identity, cfg.max_failure_details,
                sending_mta_ip=cfg.sending_mta_ip,
            )  # fmt: skip
            # Never send what a strict consumer would reject (docs/sender-rules.md §8).
            schema.validate(built.document)
        except ConfigError:
            raise  # the identity is wrong for every report: nothing can be built
        except Exception as exc:  # whatever one report's data does must stay in that report
            reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON]
            batch.set_aside.append((domain, reason))
            log.error("report for %s on %s set aside, it cannot be built: %s", domain, day, reason)
            return None
        self.result.capped += built.totals.capped
        if built.totals.capped:
            log.warning(
                "report for %s on %s: %d failure details over the cap "
                "(reporter.max_failure_details = %d) were left out",
                domain, day, built.totals.capped, cfg.max_failure_details,
            )  # fmt: skip
        recipient = domain in self.index.recipients
        if not recipient:
            self.result.host_reports += 1
        # An MX host that is no recipient domain has no record from the MTA: '' makes the
        # sender look up _smtp._tls.<host> at send time.
        by_datagram = cfg.record_source == "datagram" and recipient
        return {
            "domain": domain,
            "report_id": built.report_id,
            "message_id": message_id(built.report_id),
            "date": self.date,
            "filename": built.filename,
            "gzip": built.gzip_bytes,
            "summary": report.summary_text(built, self.identity),
            "record": self.index.records.get(domain, "") if by_datagram else "",
            "built": built,
        }
