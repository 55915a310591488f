"""Finding where a due report goes: its TLSRPT record (from the datagram or DNS), the usable
``rua`` and the caps on them, stored as the report's deliveries (RFC 8460 §3, §5).

The first step of a pass (:meth:`.sender.Sender.send_due`); the attempts are the sender's.
A temporary DNS failure postpones the report with backoff (docs/sender-rules.md §1), and the
lookups of a pass are counted so that a resolver that answers nothing is reported as our own
problem rather than blamed on every domain. The lookups run a few at once
(:mod:`.lookahead`); their answers are stored in the order of the reports, a batch of them per
transaction.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.deliver import lookahead, plan, redirect
from tlsrpt_reporter.deliver.record import RecordError, parse_record
from tlsrpt_reporter.deliver.resolver import LookupResult, Resolver
from tlsrpt_reporter.deliver.suppression import Tracker
from tlsrpt_reporter.store import leases
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store.state_db import StateDb, dialect
from tlsrpt_reporter.store.tx import savepoint, transaction

log = logging.getLogger("tlsrpt-reporter")

# dnspython's wording for a server that did answer, with an error code ("answered SERVFAIL")
_RCODE_ANSWER = re.compile(r"answered [A-Z]{4,}")


# TLSRPT lookups in flight at once while a pass resolves its reports (deliver.lookahead).
LOOKUPS_AT_ONCE = 16


@dataclass(frozen=True)
class _Looked:
    """What looking a report's record up came to, before anything is stored."""

    result: LookupResult | None = None  # None: the record came with the report, or see below
    waiting: bool = False  # not asked: the resolver was found unreachable in this pass
    error: Exception | None = None  # the lookup raised: a fault nobody foresaw


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
        # (day, destination) -> the day's deliveries to it that count against the daily cap:
        # read at its first use in the pass, then counted up as the pass stores deliveries,
        # instead of a count over the table for every rua of every report.
        self._sent: dict[tuple[str, str], int] = {}

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

    async def resolve_all(self, conn: StateDb, rows: Iterable[state.ReportRow]) -> tuple[int, int]:
        """Store the deliveries of every report of ``rows``, or its status when it has none
        (yet); (how many were resolved, how many wait for the next pass: the resolver was
        found unreachable before their record was asked for).

        The lookups run a few at once (:mod:`.lookahead`); the answers are stored in the order
        of ``rows``, each batch of them in one transaction, committed before the next lookup
        starts.
        """
        resolved = waiting = 0
        if dialect(conn) == "postgresql":
            # Reporters sharing the database resolve each report once: each claims a report
            # just before its lookup, and skips those another has claimed or resolved.
            ttl = leases.work_lease(self.cfg.attempt_deadline)
            rows = (
                row
                for row in rows
                if leases.claim_report(conn, row.id, leases.holder(), now=self.clock(), ttl=ttl)
            )
        batches = lookahead.in_order(rows, self._look_up, LOOKUPS_AT_ONCE, _answered)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                ready = [(row, looked) for row, looked in batch if not looked.waiting]
                waiting += len(batch) - len(ready)
                if not ready:
                    continue
                with transaction(conn):
                    for row, looked in ready:
                        self._store_one(conn, row, looked)
                resolved += len(ready)
        return resolved, waiting

    async def _look_up(self, row: state.ReportRow) -> _Looked:
        if row.record:
            return _Looked()
        if self.resolver.unreachable:
            # Left due, with no attempt counted: the next pass asks DNS again.
            return _Looked(waiting=True)
        try:
            return _Looked(await self.resolver.lookup_tlsrpt(row.domain))
        except Exception as exc:  # one report's trouble stays with that report
            return _Looked(error=exc)

    def _store_one(self, conn: StateDb, row: state.ReportRow, looked: _Looked) -> None:
        """Store one report's outcome inside the batch's transaction; what it wrote is undone
        when it fails, and the report is retried later."""
        try:
            with savepoint(conn, "report"):
                if looked.error is not None:
                    raise looked.error
                self._store(conn, row, looked.result)
        except Exception as exc:  # one report's trouble stays with that report
            self._failed(conn, row, exc)

    def _failed(self, conn: StateDb, row: state.ReportRow, exc: Exception) -> None:
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

    def _store(self, conn: StateDb, row: state.ReportRow, result: LookupResult | None) -> None:
        now = self.clock()
        record = row.record
        if result is not None:
            # An answer, even SERVFAIL from a domain's broken servers, shows the resolver works;
            # only lookups that got no answer at all point at our side.
            if _unanswered(result):
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
        sent = {t: self._sent_today(conn, row.day, t) for t in plan.targets(parsed)}
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
        added = state.insert_destinations(
            conn, row.id, [(d.target, d.state, d.note) for d in destinations], now
        )
        state.refresh_report_status(conn, row.id)
        for target, kind in added:  # last: a failure above leaves the counts as they were
            if (row.day, target) in self._sent and kind not in state.UNCOUNTED_STATES:
                self._sent[(row.day, target)] += 1

    def _sent_today(self, conn: StateDb, day: str, target: str) -> int:
        """How many of ``day``'s reports go to ``target`` (``plan.CAP_NOTE``)."""
        key = (day, target)
        if key not in self._sent:
            self._sent[key] = state.sent_to_destination(conn, day, target)
        return self._sent[key]


def _unanswered(result: LookupResult) -> bool:
    """Whether a TLSRPT lookup got no answer at all (a fault on our side, not the domain's)."""
    return result.status == "temporary" and not _RCODE_ANSWER.search(result.detail)


def _answered(looked: _Looked) -> bool | None:
    """For :func:`.lookahead.in_order`: None when no lookup was made."""
    return None if looked.result is None else not _unanswered(looked.result)


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
