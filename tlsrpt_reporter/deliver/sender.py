"""Delivering stored reports: resolve destinations, attempt, record, retry (RFC 8460 §5).

The order of writes is what makes crashes harmless: an attempt is committed before it starts,
a receiver's acceptance the moment its final answer arrives (before QUIT, before reading a
body: ``deliver.attempt.Handover``), and a failure when it is known. A crash between the
answer and that commit resends the same stored bytes with the same Report-ID and Message-ID,
which lets the receiver drop the duplicate.

A pass runs its deliveries in ``reporter.delivery_lanes`` lanes, one host's deliveries one
after another (:mod:`.lanes`); each attempt ends by ``reporter.attempt_deadline``, and a host
whose attempt timed out gets no more attempts in that pass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from tlsrpt_reporter.config.schema import HttpsSettings, ReporterConfig
from tlsrpt_reporter.deliver import (
    attempt,
    dkim,
    error_kinds,
    https,
    lanes,
    plan,
    report_mail,
    smtp,
)
from tlsrpt_reporter.deliver.destinations import DestinationFinder
from tlsrpt_reporter.deliver.https_client import ssl_context
from tlsrpt_reporter.deliver.redirect import mail_recipient, redirected_from, write_files
from tlsrpt_reporter.deliver.resolver import Resolver
from tlsrpt_reporter.deliver.suppression import Tracker
from tlsrpt_reporter.errors import DeliveryError
from tlsrpt_reporter.logs import Progress
from tlsrpt_reporter.schedule.timing import backoff
from tlsrpt_reporter.store import leases, own_problems
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store.accepted import record_accepted
from tlsrpt_reporter.store.state_db import StateDb
from tlsrpt_reporter.store.tx import transaction

log = logging.getLogger("tlsrpt-reporter")

# What one attempt may raise and the scheduler records; a DKIM key that cannot sign fails the
# same way on every retry.
_DELIVERY_ERRORS = (DeliveryError, dkim.DkimError)


@dataclass
class SendSummary:
    """What one pass of :meth:`Sender.send_due` did."""

    resolved: int = 0
    attempted: int = 0
    sent: int = 0
    retrying: int = 0
    given_up: int = 0
    # Not tried in this pass because their host (or the relay) timed out on another one.
    postponed: int = 0
    # Attempted, or being attempted, by another reporter sharing the state database.
    taken: int = 0
    errors: list[str] = field(default_factory=list)
    # Failures on this side (the relay, the resolver), one line each with the fix: no
    # receiver can be blamed, so ``send`` exits 1 on them.
    problems: list[str] = field(default_factory=list)


class Tried(NamedTuple):
    """What one attempt came to: ``outcome`` (``sent``, ``failed-retrying``, ``given-up``;
    ``taken``: not made, another reporter sharing the database has the delivery), the failure's
    kind (``deliver.error_kinds``; ``''`` when sent), and the next attempt."""

    outcome: str
    kind: str
    next_attempt: float


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
        # reporter.mail.sign_by = "relay": no key of ours, the relay signs.
        self.mail_enabled = bool(keys) or cfg.mail.sign_by == "relay"
        # Per pass: our own failures (kind -> line).
        self._problems: dict[str, str] = {}
        self._waiting_for_dns = 0  # reports and deliveries left for the next pass, DNS down
        # Per pass: the dead destinations and the outcomes that find them (deliver.suppression).
        self._suppression = Tracker.idle(cfg)
        # Per pass: the TLS context of every report POST (https_client.ssl_context), built
        # once: each build parses the whole CA bundle again (half a millisecond of CPU).
        self._tls: ssl.SSLContext | None = None

    async def send_due(self, conn: StateDb, force: bool = False) -> SendSummary:
        """Resolve the destinations of due reports, then attempt every due delivery."""
        summary = SendSummary()
        self._problems = {}
        self._suppression = Tracker(conn, self.cfg, self.clock)
        finder = DestinationFinder(self.cfg, self.resolver, self.rng, self.clock, self._suppression)
        self.resolver.new_pass()
        self._tls = None  # built again at its first use: the CA bundle may have changed
        rows = state.reports_to_resolve(conn, self.clock(), force)
        summary.resolved, self._waiting_for_dns = await finder.resolve_all(conn, rows)
        due = [
            d
            for d in state.due_deliveries(conn, self.clock(), force)
            # The DKIM self-check failed at start-up: mail waits, HTTPS goes on.
            if self.mail_enabled or not d.destination.startswith("mailto:")
        ]
        await self._deliver_all(conn, self._suppression.hold(due), summary)
        if finder.dns_problem:
            self._problems["dns"] = finder.dns_problem
        if self.resolver.unreachable:
            n = self._waiting_for_dns
            waiting = f"; {n} reports and deliveries wait for the next pass" if n else ""
            self._problems["dns"] = self.resolver.unreachable + waiting
        summary.problems = list(self._problems.values())
        if summary.resolved or summary.attempted or summary.postponed or self._waiting_for_dns:
            # For `status`, after `send` has exited; an idle pass proves nothing.
            own_problems.record(conn, self.clock(), self._problems)
        return summary

    async def _deliver_all(
        self, conn: StateDb, due: list[state.DeliveryRow], summary: SendSummary
    ) -> None:
        """Attempt ``due`` in lanes by host; after a timeout, the rest of that host's (or, for
        mail through the relay, all mail) waits until the timed-out delivery's next attempt."""
        progress = Progress("sending", len(due))
        stalled: dict[str, float] = {}  # failure domain -> when to try it again
        postponed: dict[str, int] = {}

        async def one(delivery: state.DeliveryRow) -> None:
            where = self._failure_domain(delivery.destination)
            # As in send_due: due again in the next pass. Mail through a relay needs no DNS.
            if self.resolver.unreachable and where != f"relay {self.smtp_settings.relay}":
                self._waiting_for_dns += 1
                summary.postponed += 1
            elif where in stalled:
                # One timeout per host and pass: a hanging host with a thousand reports due
                # would otherwise hold its lane for a thousand deadlines.
                later = max(stalled[where], delivery.next_attempt)
                state.set_delivery(conn, delivery.report, delivery.destination, next_attempt=later)
                summary.postponed += 1
                postponed[where] = postponed.get(where, 0) + 1
            else:
                tried = await self._attempt(conn, delivery)
                summary.attempted += tried.outcome != "taken"
                if tried.outcome == "taken":
                    summary.taken += 1
                elif tried.outcome == "sent":
                    summary.sent += 1
                elif tried.outcome == "given-up":
                    summary.given_up += 1
                else:
                    summary.retrying += 1
                if tried.kind == "timeout":
                    stalled.setdefault(where, tried.next_attempt)
            progress.step(summary.attempted + summary.postponed + summary.taken)

        groups = plan.by_host(due, lambda d: plan.host_of(d.destination))
        # Hosts that timed out last time go last (a stable sort): with more hanging hosts than
        # lanes, the healthy ones are not kept waiting behind them again.
        groups.sort(key=lambda group: any(d.error_kind == "timeout" for d in group))
        await lanes.run_lanes(groups, self.cfg.delivery_lanes, one)
        for where, count in postponed.items():
            log.warning("%s timed out: %d more deliveries to it wait until %s",
                        where, count, _utc(stalled[where]))  # fmt: skip

    def _failure_domain(self, destination: str) -> str:
        """What one timeout says is slow: the relay for all mail through it, else the host."""
        if destination.startswith("mailto:") and self.smtp_settings.relay != "direct":
            return f"relay {self.smtp_settings.relay}"
        return plan.host_of(destination)

    def _server_of(self, destination: str) -> str:
        """Who an attempt to ``destination`` waits for, in an error message."""
        if destination.startswith("dir:"):  # reporter.redirect
            return f"the directory {destination.removeprefix('dir:')}"
        if not destination.startswith("mailto:"):
            return f"POST {destination}"
        if self.smtp_settings.relay != "direct":
            return f"relay {self.smtp_settings.relay}"
        return f"the MX hosts of {destination.rpartition('@')[2]}"

    async def _attempt(self, conn: StateDb, delivery: state.DeliveryRow) -> Tried:
        now = self.clock()
        attempts = delivery.attempts + 1
        first = delivery.first_attempt or now
        backoff_at = now + backoff(attempts, self.rng)
        row = state.report(conn, delivery.report)
        message_id, date = delivery.message_id, delivery.date
        if delivery.destination.startswith(("mailto:", "dir:")) and not message_id:
            # RFC 5322 §3.6.1: the Date is when the mail is first handed to the relay or MX (now),
            # and this destination has a Message-ID of its own; both are kept, so every retry
            # to it is byte-identical to this first attempt (RFC 8460 §5.5).
            message_id = plan.destination_message_id(row.message_id, delivery.destination)
            date = email.utils.format_datetime(dt.datetime.fromtimestamp(int(now), dt.UTC))
        # Recorded before the attempt: a crash now means a retry later, never a lost report.
        # The same statement claims the delivery until the attempt's deadline has surely
        # passed: a reporter sharing the database skips it, or takes it over if we die.
        if not leases.start_attempt(
            conn, (delivery.report, delivery.destination), leases.holder(), now=now,
            ttl=leases.work_lease(self.cfg.attempt_deadline), seen_attempts=delivery.attempts,
            values={"attempts": attempts, "first_attempt": first, "next_attempt": backoff_at,
                    "message_id": message_id, "date": date},
        ):  # fmt: skip
            return Tried("taken", "", delivery.next_attempt)
        if message_id:
            row = dataclasses.replace(row, message_id=message_id, date=date)
        # The acceptance is committed the moment the final answer arrives, in a transaction of
        # its own, before QUIT or reading a body: a crash after it resends nothing.
        handover = attempt.Handover(lambda answer: self._accepted(conn, delivery, answer))
        where = self._server_of(delivery.destination)
        try:
            detail = await attempt.within(
                self.cfg.attempt_deadline,
                where,
                self._deliver(row, delivery.destination, handover,
                              redirected_from(conn, delivery.report)),
            )  # fmt: skip
        except Exception as exc:
            if not handover.answer:
                with transaction(conn):  # one commit for the outcome, the status, the count
                    tried = self._failed(conn, delivery, row, exc, attempts=attempts,
                                         first=first, backoff_at=backoff_at)  # fmt: skip
                    state.refresh_report_status(conn, delivery.report)
                return tried
            # Taken: what failed after the answer (a lost QUIT, a body cut off, the deadline)
            # changes nothing, and trying again would only make a duplicate.
            detail = f"{handover.answer} (then: {exc})"
        if not handover.answer:  # no transport answer to record first (a dir: redirect)
            self._accepted(conn, delivery, detail)
        elif detail[:1000] != handover.answer[:1000]:
            state.set_delivery(conn, delivery.report, delivery.destination, detail=detail[:1000])
        log.info("report %s for %s delivered to %s: %s", row.report_id, row.domain,
                 delivery.destination, detail)  # fmt: skip
        return Tried("sent", "", backoff_at)

    def _accepted(self, conn: StateDb, delivery: state.DeliveryRow, answer: str) -> None:
        """Record the acceptance of ``delivery`` and count it for its destination's day
        (deliver.suppression), committed together the moment the answer arrives."""
        record_accepted(conn, delivery.report, delivery.destination, self.clock(), answer[:1000],
                        also=lambda: self._suppression.delivered(delivery.destination))  # fmt: skip

    def _failed(
        self,
        conn: StateDb,
        delivery: state.DeliveryRow,
        row: state.ReportRow,
        exc: Exception,
        *,
        attempts: int,
        first: float,
        backoff_at: float,
    ) -> Tried:
        """Record a failed attempt: retry later, or give up (permanent, or past retry_for)."""
        late = self.clock() - first >= self.cfg.retry_for
        if not isinstance(exc, _DELIVERY_ERRORS):  # a fault nobody foresaw: retried
            outcome = "given-up" if late else "failed-retrying"
            why = f"unexpected {type(exc).__name__}: {exc}"
            state.set_delivery(conn, delivery.report, delivery.destination, state=outcome,
                               last_error=why[:1000], error_kind="local",
                               lease_holder="")  # fmt: skip
            log.error("report %s to %s: attempt %d failed (%s): %s", row.report_id,
                      delivery.destination, attempts, outcome, why)  # fmt: skip
            return Tried(outcome, "local", backoff_at)
        permanent = exc.permanent if isinstance(exc, DeliveryError) else True
        outcome = "given-up" if permanent or late else "failed-retrying"
        # A receiver's Retry-After inside the retry window sets the next attempt.
        asked = _retry_after(exc, self.clock())
        later = plan.next_attempt(backoff_at, asked, self.clock(), first, self.cfg.retry_for)
        kind = error_kinds.of_exception(exc)
        # The claim ends with the outcome (store.leases): the retry is anyone's.
        state.set_delivery(conn, delivery.report, delivery.destination, state=outcome,
                           last_error=str(exc)[:1000], next_attempt=later,
                           error_kind=kind, lease_holder="")  # fmt: skip
        log.warning("report %s to %s: attempt %d failed (%s): %s", row.report_id,
                    delivery.destination, attempts, outcome, exc)  # fmt: skip
        if asked is not None and outcome == "failed-retrying":
            how = "as its Retry-After asks" if later != backoff_at else "(Retry-After too late)"
            log.info("report %s to %s: next attempt at %s %s", row.report_id,
                     delivery.destination, _utc(later), how)  # fmt: skip
        self._suppression.failed(delivery.destination, exc)
        self._note_relay_problem(exc)
        return Tried(outcome, kind, later)

    def _note_relay_problem(self, exc: BaseException) -> None:
        """Remember a failure of our own mail relay: it stops every mailto: report."""
        if isinstance(exc, attempt.AttemptDeadline) and exc.server.startswith("relay "):
            self._problems.setdefault(
                "relay",
                f"the mail relay {exc.server.removeprefix('relay ')} did not take a report within "
                f"{exc.seconds:g}s: is it overloaded or stuck? (or raise "
                f"{attempt.DEADLINE_KEY})",
            )
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

    async def _deliver(
        self,
        row: state.ReportRow,
        destination: str,
        on_accepted: Callable[[str], None] | None = None,
        origins: Sequence[str] = (),
    ) -> str:
        """Hand the report to ``destination``; ``origins``: where it would have gone had
        reporter.redirect not sent it to ``destination`` (deliver.redirect)."""
        if destination.startswith("dir:"):
            eml = self.compose(row, mail_recipient(origins, self.cfg.mail.from_addr), origins)
            return write_files(destination, row.filename, row.gzip, eml)
        if destination.startswith("mailto:"):
            address = destination[len("mailto:") :]
            message = self.compose(row, address, origins)
            result = await smtp.send(
                message, self.smtp_settings.envelope_from, [address], self.smtp_settings,
                mx_lookup=self.resolver.mx_hosts, resolve=self.resolver.addresses,
                on_accepted=on_accepted,
            )  # fmt: skip
            return str(result)
        if self._tls is None:
            self._tls = ssl_context(self.https_settings)
        posted = await https.post_report(
            destination, row.gzip, self.https_settings, resolve=self.resolver.addresses,
            on_accepted=on_accepted, context=self._tls,
        )  # fmt: skip
        return str(posted)

    def compose(self, row: state.ReportRow, address: str, origins: Sequence[str] = ()) -> bytes:
        """The signed report mail of ``row`` for ``address`` (:func:`.report_mail.signed`)."""
        return report_mail.signed(self.cfg, self.keys, row, address, origins)

    def unsigned(self, row: state.ReportRow, address: str, origins: Sequence[str] = ()) -> bytes:
        """The report mail of ``row`` for ``address`` before DKIM signing
        (:func:`.report_mail.unsigned`)."""
        return report_mail.unsigned(self.cfg, row, address, origins)


def _retry_after(exc: BaseException, now: float) -> float | None:
    """The time an HTTPS receiver asked us to come back at (``deliver.plan.retry_after``)."""
    if isinstance(exc, https.HttpsDeliveryError):
        return plan.retry_after(exc.status, exc.retry_after, now)
    return None


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
