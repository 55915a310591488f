"""Finding where a due report goes: its TLSRPT record (from the datagram or DNS), the usable
``rua`` and the caps on them, stored as the report's deliveries (RFC 8460 §3, §5).

The first step of a pass (:meth:`.sender.Sender.send_due`); the attempts are the sender's.
A temporary DNS failure postpones the report with backoff (docs/sender-rules.md §1), and the
lookups of a pass are counted so that a resolver that answers nothing is reported as our own
problem rather than blamed on every domain.
"""

from __future__ import annotations

import logging
import random
import re
import sqlite3
from collections.abc import Callable

from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.deliver import plan, redirect
from tlsrpt_reporter.deliver.record import RecordError, parse_record
from tlsrpt_reporter.deliver.resolver import Resolver
from tlsrpt_reporter.deliver.suppression import Tracker
from tlsrpt_reporter.store import reports as state

log = logging.getLogger("tlsrpt-reporter")

# dnspython's wording for a server that did answer, with an error code ("answered SERVFAIL")
_RCODE_ANSWER = re.compile(r"answered [A-Z]{4,}")


class DestinationFinder:
    """Resolves the destinations of the reports of one pass; :attr:`dns_problem` is set when
    none of its TLSRPT lookups got any answer."""

    def __init__(
        self,
        cfg: ReporterConfig,
        resolver: Resolver,
        rng: random.Random,
        clock: Callable[[], float],
        suppression: Tracker | None = None,
    ) -> None:
        self.cfg = cfg
        # Dead destinations get a "suppressed" delivery instead of an attempt (deliver.dead).
        self.suppression = suppression or Tracker.idle(cfg)
        self.resolver = resolver
        self.rng = rng
        self.clock = clock
        # The TLSRPT lookups that got an answer, that got none, and the last of those.
        self._answered = self._unanswered = 0
        self._last = ""

    @property
    def dns_problem(self) -> str:
        """One line naming the resolver trouble of this pass (``''``: none seen)."""
        if not self._unanswered or self._answered:
            return ""
        return (
            f"no DNS lookup got an answer ({self._unanswered}; the last: {self._last}): is the "
            "resolver running and reachable? check [dns] nameservers (empty means "
            "/etc/resolv.conf)"
        )

    async def resolve(self, conn: sqlite3.Connection, row: state.ReportRow) -> None:
        """Store the deliveries of report ``row``, or its status when it has none (yet)."""
        try:
            await self._resolve(conn, row)
        except Exception as exc:  # one report's trouble stays with that report
            self._failed(conn, row, exc)

    def _failed(self, conn: sqlite3.Connection, row: state.ReportRow, exc: Exception) -> None:
        """Something nobody foresaw went wrong for this report: retry it like a DNS failure."""
        why = f"unexpected {type(exc).__name__}: {exc}"[:1000]
        log.error("finding the destinations of %s (%s) failed: %s", row.domain, row.day, why)
        retry = plan.after_failure(
            row.attempts, row.first_attempt, self.clock(), self.cfg.retry_for, self.rng
        )
        if retry.give_up:
            state.set_report(conn, row.id, status="given-up", last_error=why)
            return
        state.set_report(
            conn, row.id, attempts=retry.attempts, first_attempt=retry.first_attempt,
            next_attempt=retry.next_attempt, last_error=why,
        )  # fmt: skip

    async def _resolve(self, conn: sqlite3.Connection, row: state.ReportRow) -> None:
        now = self.clock()
        record = row.record
        if not record:
            result = await self.resolver.lookup_tlsrpt(row.domain)
            # An answer, even SERVFAIL from a domain's broken servers, shows the resolver works;
            # only lookups that got no answer at all point at our side.
            unanswered = result.status == "temporary" and not _RCODE_ANSWER.search(result.detail)
            if unanswered:
                self._unanswered += 1
                self._last = result.detail
            else:
                self._answered += 1
            if result.status == "temporary":
                # docs/sender-rules.md §1: a temporary DNS failure is "later", never "no record".
                retry = plan.after_failure(
                    row.attempts, row.first_attempt, now, self.cfg.retry_for, self.rng
                )
                if retry.give_up:
                    log.error("giving up on %s (%s): DNS kept failing: %s",
                              row.domain, row.day, result.detail)  # fmt: skip
                    state.set_report(conn, row.id, status="given-up", last_error=result.detail)
                    return
                state.set_report(
                    conn, row.id, attempts=retry.attempts, first_attempt=retry.first_attempt,
                    next_attempt=retry.next_attempt, last_error=result.detail,
                )  # fmt: skip
                log.warning("DNS lookup for %s failed, retrying later: %s",
                            row.domain, result.detail)  # fmt: skip
                return
            if result.status == "none" or result.record is None:
                # Debug only: most MX hosts of MX-host reports (RFC 8460 §1.1) publish nothing.
                log.debug("no report for %s (%s): %s",
                          row.domain, row.day, result.detail)  # fmt: skip
                state.set_report(conn, row.id, status="no-destination", last_error=result.detail)
                return
            record = result.record
        try:
            parsed = parse_record(record)
        except RecordError as exc:
            state.set_report(conn, row.id, status="no-destination", last_error=str(exc))
            log.warning("no report for %s: its record is unusable: %s", row.domain, exc)
            return
        for note in parsed.ignored:
            log.info("record of %s: %s", row.domain, note)
        sent = {t: state.sent_to_destination(conn, row.day, t) for t in plan.targets(parsed)}
        dead = {t: self.suppression.note_for(t) for t in plan.targets(parsed)}
        destinations = plan.destinations(
            parsed, sent, self.cfg.max_reports_per_destination, self.cfg.max_destinations_per_host,
            suppressed=dead,
        )  # fmt: skip
        if not destinations:
            note = "; ".join(parsed.ignored) or "no usable rua"
            state.set_report(conn, row.id, status="no-destination", last_error=note)
            return
        _log_left_out(row.domain, destinations)
        if self.cfg.redirect:  # the first week: the operator gets it instead
            destinations = redirect.apply(destinations, self.cfg.redirect)
            log.info("report for %s (%s) redirected to %s (%s)",
                     row.domain, row.day, self.cfg.redirect, redirect.KEY)  # fmt: skip
        state.add_destinations(
            conn, row.id, [(d.target, d.state, d.note) for d in destinations], now
        )
        state.refresh_report_status(conn, row.id)


def _log_left_out(domain: str, destinations: list[plan.Destination]) -> None:
    for capped in (d for d in destinations if d.state == "given-up"):
        log.warning("not sending %s's report to %s: per-destination cap reached",
                    domain, capped.target)  # fmt: skip
    skipped: dict[str, int] = {}
    for d in destinations:
        if d.state == "skipped":
            host = plan.host_of(d.target)
            skipped[host] = skipped.get(host, 0) + 1
    for host, count in skipped.items():
        # RFC 8460 §7: a record can list any number of rua on one host.
        log.warning("not sending %s's report to %d more destinations on %s (%s)",
                    domain, count, host, plan.HOST_CAP_KEY)  # fmt: skip
