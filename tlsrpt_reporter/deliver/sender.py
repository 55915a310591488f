"""Delivering stored reports: resolve destinations, attempt, record, retry (RFC 8460 §5).

The order of writes is what makes crashes harmless: an attempt is committed before it starts
and its outcome the moment it is known. A crash between a receiver's acceptance and the
commit resends the same stored bytes with the same Report-ID and Message-ID, which lets the
receiver drop the duplicate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import logging
import random
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tlsrpt_reporter.config.schema import HttpsSettings, ReporterConfig
from tlsrpt_reporter.deliver import dkim, error_kinds, https, mail, plan, smtp
from tlsrpt_reporter.deliver.record import RecordError, parse_record
from tlsrpt_reporter.deliver.resolver import Resolver
from tlsrpt_reporter.errors import DeliveryError
from tlsrpt_reporter.logs import Progress
from tlsrpt_reporter.schedule.timing import backoff
from tlsrpt_reporter.store import reports as state

log = logging.getLogger("tlsrpt-reporter")

# What one attempt may raise and the scheduler records; a DKIM key that cannot sign fails the
# same way on every retry.
_DELIVERY_ERRORS = (DeliveryError, dkim.DkimError)

# dnspython's wording for a server that did answer, with an error code ("answered SERVFAIL")
_RCODE_ANSWER = re.compile(r"answered [A-Z]{4,}")


@dataclass
class SendSummary:
    """What one pass of :meth:`Sender.send_due` did."""

    resolved: int = 0
    attempted: int = 0
    sent: int = 0
    retrying: int = 0
    given_up: int = 0
    errors: list[str] = field(default_factory=list)
    # Failures on this side (the relay, the resolver), one line each with the fix: no
    # receiver can be blamed, so ``send`` exits 1 on them.
    problems: list[str] = field(default_factory=list)


class Sender:
    """Delivers due reports; one instance per process (it holds the loaded DKIM keys)."""

    def __init__(
        self,
        cfg: ReporterConfig,
        resolver: Resolver,
        https_settings: HttpsSettings,
        keys: list[dkim.LoadedKey],
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.resolver = resolver
        self.https_settings = https_settings
        self.keys = keys
        self.rng = rng or random.Random()
        self.clock = clock
        self.smtp_settings = smtp.SmtpSettings(
            relay=cfg.mail.relay,
            starttls=cfg.mail.relay_starttls,
            username=cfg.mail.relay_username,
            password_file=cfg.mail.relay_password_file,
            helo_name=cfg.mail.helo_name,
            envelope_from=cfg.mail.envelope_from or cfg.mail.from_addr,
            allow_private=cfg.mail.allow_private,
        )
        self.mail_enabled = bool(keys)
        # Per pass: our own failures (kind -> line), and the TLSRPT lookups that got an answer,
        # that got none, and the last of those.
        self._problems: dict[str, str] = {}
        self._dns_answered = self._dns_unanswered = 0
        self._dns_last = ""

    async def send_due(self, conn: sqlite3.Connection, force: bool = False) -> SendSummary:
        """Resolve the destinations of due reports, then attempt every due delivery."""
        summary = SendSummary()
        self._problems = {}
        self._dns_answered = self._dns_unanswered = 0
        for row in state.reports_to_resolve(conn, self.clock(), force):
            try:
                await self._resolve(conn, row)
            except Exception as exc:  # one report's trouble stays with that report
                self._resolve_failed(conn, row, exc)
            summary.resolved += 1
        due = state.due_deliveries(conn, self.clock(), force)
        progress = Progress("sending", len(due))
        for done, delivery in enumerate(due, 1):
            progress.step(done)
            if delivery.destination.startswith("mailto:") and not self.mail_enabled:
                continue  # the DKIM self-check failed at start-up: mail waits, HTTPS goes on
            outcome = await self._attempt(conn, delivery)
            summary.attempted += 1
            if outcome == "sent":
                summary.sent += 1
            elif outcome == "given-up":
                summary.given_up += 1
            else:
                summary.retrying += 1
        if self._dns_unanswered and not self._dns_answered:
            self._problems["dns"] = (
                f"no DNS lookup got an answer ({self._dns_unanswered}; the last: "
                f"{self._dns_last}): is the resolver running and reachable? check [dns] "
                "nameservers (empty means /etc/resolv.conf)"
            )
        summary.problems = list(self._problems.values())
        return summary

    def _resolve_failed(
        self, conn: sqlite3.Connection, row: state.ReportRow, exc: Exception
    ) -> None:
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
                self._dns_unanswered += 1
                self._dns_last = result.detail
            else:
                self._dns_answered += 1
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
        destinations = plan.destinations(parsed, sent, self.cfg.max_reports_per_destination)
        for capped in (d for d in destinations if d.state == "given-up"):
            log.warning("not sending %s's report to %s: per-destination cap reached",
                        row.domain, capped.target)  # fmt: skip
        if not destinations:
            note = "; ".join(parsed.ignored) or "no usable rua"
            state.set_report(conn, row.id, status="no-destination", last_error=note)
            return
        state.add_destinations(
            conn, row.id, [(d.target, d.state, d.note) for d in destinations], now
        )
        state.refresh_report_status(conn, row.id)

    async def _attempt(self, conn: sqlite3.Connection, delivery: state.DeliveryRow) -> str:
        now = self.clock()
        attempts = delivery.attempts + 1
        first = delivery.first_attempt or now
        backoff_at = now + backoff(attempts, self.rng)
        row = state.report(conn, delivery.report)
        message_id, date = delivery.message_id, delivery.date
        if delivery.destination.startswith("mailto:") and not message_id:
            # RFC 5322 §3.6.1: the Date is when the mail is first handed to the relay or MX (now),
            # and this destination has a Message-ID of its own; both are kept, so every retry
            # to it is byte-identical to this first attempt (RFC 8460 §5.5).
            message_id = plan.destination_message_id(row.message_id, delivery.destination)
            date = email.utils.format_datetime(dt.datetime.fromtimestamp(int(now), dt.UTC))
        # Recorded before the attempt: a crash now means a retry later, never a lost report.
        state.set_delivery(
            conn, delivery.report, delivery.destination, attempts=attempts,
            first_attempt=first, next_attempt=backoff_at, message_id=message_id, date=date,
        )  # fmt: skip
        if message_id:
            row = dataclasses.replace(row, message_id=message_id, date=date)
        try:
            detail = await self._deliver(row, delivery.destination)
        except _DELIVERY_ERRORS as exc:
            permanent = exc.permanent if isinstance(exc, DeliveryError) else True
            if permanent or self.clock() - first >= self.cfg.retry_for:
                outcome = "given-up"
            else:
                outcome = "failed-retrying"
            # A receiver's Retry-After inside the retry window sets the next attempt.
            asked = _retry_after(exc, self.clock())
            later = plan.next_attempt(backoff_at, asked, self.clock(), first, self.cfg.retry_for)
            state.set_delivery(conn, delivery.report, delivery.destination, state=outcome,
                               last_error=str(exc)[:1000], next_attempt=later,
                               error_kind=error_kinds.of_exception(exc))  # fmt: skip
            log.warning("report %s to %s: attempt %d failed (%s): %s", row.report_id,
                        delivery.destination, attempts, outcome, exc)  # fmt: skip
            if asked is not None and outcome == "failed-retrying":
                how = "as its Retry-After asks" if later != backoff_at else "(Retry-After too late)"
                log.info("report %s to %s: next attempt at %s %s", row.report_id,
                         delivery.destination, _utc(later), how)  # fmt: skip
            self._note_relay_problem(exc)
        except Exception as exc:  # a fault nobody foresaw: this destination only, retried
            late = self.clock() - first >= self.cfg.retry_for
            outcome = "given-up" if late else "failed-retrying"
            why = f"unexpected {type(exc).__name__}: {exc}"
            state.set_delivery(conn, delivery.report, delivery.destination, state=outcome,
                               last_error=why[:1000], error_kind="local")  # fmt: skip
            log.error("report %s to %s: attempt %d failed (%s): %s", row.report_id,
                      delivery.destination, attempts, outcome, why)  # fmt: skip
        else:
            outcome = "sent"
            state.set_delivery(conn, delivery.report, delivery.destination, state="sent",
                               accepted_at=self.clock(), detail=detail[:1000])  # fmt: skip
            log.info("report %s for %s delivered to %s: %s", row.report_id, row.domain,
                     delivery.destination, detail)  # fmt: skip
        state.refresh_report_status(conn, delivery.report)
        return outcome

    def _note_relay_problem(self, exc: BaseException) -> None:
        """Remember a failure of our own mail relay: it stops every mailto: report."""
        if not isinstance(exc, smtp.SmtpDeliveryError) or not exc.server.startswith("relay "):
            return
        relay = exc.server.removeprefix("relay ")
        if exc.stage == "connect":
            self._problems["relay"] = (
                f"the mail relay {relay} cannot be reached ({exc}): start it, or fix "
                "reporter.mail.relay"
            )
        else:
            self._problems.setdefault(
                "relay",
                f"the mail relay {relay} did not take a report ({exc}): it must accept mail "
                "from this host to any domain (relay_username and relay_password_file if it "
                "wants AUTH)",
            )

    async def _deliver(self, row: state.ReportRow, destination: str) -> str:
        if destination.startswith("mailto:"):
            address = destination[len("mailto:") :]
            message = self.compose(row, address)
            result = await smtp.send(
                message, self.smtp_settings.envelope_from, [address], self.smtp_settings,
                mx_lookup=self.resolver.mx_hosts, resolve=self.resolver.addresses,
            )  # fmt: skip
            return str(result)
        posted = await https.post_report(
            destination, row.gzip, self.https_settings, resolve=self.resolver.addresses
        )
        return str(posted)

    def compose(self, row: state.ReportRow, address: str) -> bytes:
        """The signed report mail of ``row`` for ``address``, with the row's Date and
        Message-ID; the signatures' ``t=`` is that Date, so a retry gives the same bytes."""
        stamp = int(_mail_date(row.date).timestamp())
        return dkim.sign(self.unsigned(row, address), self.keys, timestamp=stamp)

    def unsigned(self, row: state.ReportRow, address: str) -> bytes:
        """The report mail of ``row`` for ``address``, before DKIM signing."""
        date = _mail_date(row.date)
        return mail.compose(
            report_domain=row.domain,
            submitter=self.cfg.contact_info.rpartition("@")[2].lower(),
            report_id=row.report_id,
            from_addr=self.cfg.mail.from_addr,
            to_addrs=[address],
            gzip_body=row.gzip,
            filename=row.filename,
            summary_text=row.summary,
            date=date,
            message_id=row.message_id,
        )


def _mail_date(date: str) -> dt.datetime:
    """A stored RFC 5322 date (now when there is none to read)."""
    try:
        return email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return dt.datetime.now(dt.UTC)


def _retry_after(exc: BaseException, now: float) -> float | None:
    """The time an HTTPS receiver asked us to come back at (``deliver.plan.retry_after``)."""
    if isinstance(exc, https.HttpsDeliveryError):
        return plan.retry_after(exc.status, exc.retry_after, now)
    return None


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
