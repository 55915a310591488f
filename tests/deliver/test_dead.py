"""The rule that finds a dead destination (deliver.dead), without servers: which failures are the
destination's own, and when a run of failed days makes it dead."""

from __future__ import annotations

import ssl

import pytest

from tlsrpt_reporter.deliver import attempt, dead, https, smtp
from tlsrpt_reporter.deliver.resolver import DnsTemporaryError
from tlsrpt_reporter.store.suppressed import DayOutcome

MX = "MX host mx.example.org (example.org)"


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


THEIRS = [
    smtp.SmtpDeliveryError(
        f"no MX host of example.org took the report: {MX} refused every recipient: "
        "a@example.org: 550 5.1.1 no such user",
        permanent=True, server=MX, reply="a@example.org: 550 5.1.1 no such user",
        stage="transaction",
    ),
    smtp.SmtpDeliveryError(f"{MX} answered 451 4.3.0 try later to the message data",
                           permanent=False, server=MX, reply="451 4.3.0 try later",
                           stage="transaction"),
    smtp.SmtpDeliveryError("example.org has no mail host (null MX or no such domain)",
                           permanent=True),
    smtp.SmtpDeliveryError(f"no MX host of example.org took the report: {MX}: the name has "
                           "no address", permanent=True, server=MX, stage="connect"),
    _caused(smtp.SmtpDeliveryError(f"{MX}: connect failed: [Errno 111]", permanent=False,
                                   server=MX, stage="connect"),
            ConnectionRefusedError(111, "Connection refused")),
    # A relay that refuses the address itself speaks for the destination (RFC 3463 §3.2).
    smtp.SmtpDeliveryError(
        "relay 127.0.0.1:25 refused every recipient: a@gone.example: 550 5.1.2 bad domain",
        permanent=True, server="relay 127.0.0.1:25",
        reply="a@gone.example: 550 5.1.2 bad domain", stage="transaction",
    ),
    https.HttpsDeliveryError("POST https://r.example/x (to 192.0.2.1): HTTP 500 Oops",
                             status=500),
    https.HttpsDeliveryError("POST https://r.example/x (to 192.0.2.1): HTTP 404 Not Found",
                             status=404),
    https.HttpsDeliveryError("POST https://r.example/x: r.example has no address"),
    _caused(https.HttpsDeliveryError("POST https://r.example/x (to 192.0.2.1): TLS failed"),
            ssl.SSLError(1, "certificate verify failed")),
    _caused(https.HttpsDeliveryError("POST https://r.example/x (to 192.0.2.1): connect failed"),
            ConnectionRefusedError(111, "Connection refused")),
]  # fmt: skip

OURS = [
    # Our relay refusing to relay, or down: every destination would look dead.
    smtp.SmtpDeliveryError(
        "relay 127.0.0.1:25 refused every recipient: a@example.org: 554 5.7.1 Relay access "
        "denied", permanent=True, server="relay 127.0.0.1:25",
        reply="a@example.org: 554 5.7.1 Relay access denied", stage="transaction",
    ),
    _caused(smtp.SmtpDeliveryError("relay 127.0.0.1:25: connect failed", permanent=False,
                                   server="relay 127.0.0.1:25", stage="connect"),
            ConnectionRefusedError(111, "Connection refused")),
    # Our resolver without an answer.
    smtp.SmtpDeliveryError("MX lookup for example.org failed: no nameserver answered",
                           permanent=False),
    _caused(https.HttpsDeliveryError("POST https://r.example/x: cannot resolve r.example: "
                                     "no answer within 5s"),
            DnsTemporaryError("r.example A: no answer within 5s")),
    # Our network: unreachable is not refused, and a timeout may be anybody's.
    _caused(https.HttpsDeliveryError("POST https://r.example/x (to 192.0.2.1): connect failed"),
            OSError(101, "Network is unreachable")),
    https.HttpsDeliveryError("POST https://r.example/x: no complete answer within 90s"),
    attempt.AttemptDeadline("POST https://r.example/x", 300),
    # What we refuse to send.
    https.ForbiddenAddress("POST https://r.example/x refused: 10.0.0.1 is private"),
    ValueError("a bug of ours"),
]  # fmt: skip


@pytest.mark.parametrize("exc", THEIRS, ids=lambda e: str(e)[:60])
def test_a_refusal_or_a_missing_name_at_the_destination_counts(exc: BaseException) -> None:
    assert dead.at_destination(exc)


@pytest.mark.parametrize("exc", OURS, ids=lambda e: str(e)[:60])
def test_a_failure_of_our_relay_resolver_or_network_does_not_count(exc: BaseException) -> None:
    assert not dead.at_destination(exc)


def _days(*spec: tuple[str, int, int]) -> list[DayOutcome]:
    return [DayOutcome(day, delivered, failed) for day, delivered, failed in spec]


def test_seven_failed_days_in_a_row_make_a_destination_dead() -> None:
    days = _days(*((f"2026-03-0{i}", 0, 2) for i in range(1, 8)))
    assert dead.failed_days(days, "2026-03-08") == 7
    assert dead.is_dead(days, "2026-03-08", 7)
    assert not dead.is_dead(days[1:], "2026-03-08", 7), "six are not enough"


def test_the_day_still_running_is_not_judged() -> None:
    days = _days(*((f"2026-03-0{i}", 0, 1) for i in range(2, 9)))
    assert not dead.is_dead(days, "2026-03-08", 7), "2026-03-08 may still get through"
    assert dead.is_dead(days, "2026-03-09", 7)


def test_days_without_attempts_are_skipped_and_a_success_ends_the_run() -> None:
    gaps = _days(("2026-03-01", 0, 1), ("2026-03-05", 0, 1), ("2026-03-20", 0, 3))
    assert dead.failed_days(gaps, "2026-03-21") == 3
    mixed = _days(("2026-03-01", 0, 1), ("2026-03-02", 1, 4), ("2026-03-03", 0, 1))
    assert dead.failed_days(mixed, "2026-03-04") == 1, "a day with one success is no failed day"


def test_zero_days_turns_suppression_off() -> None:
    days = _days(*((f"2026-03-{i:02d}", 0, 1) for i in range(1, 30)))
    assert not dead.is_dead(days, "2026-04-01", 0)
