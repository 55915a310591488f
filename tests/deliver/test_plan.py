"""The pure rules of a delivery pass (tlsrpt_reporter.deliver.plan): no DNS, no database."""

from __future__ import annotations

import random

import pytest

from tlsrpt_reporter.deliver import mail, plan
from tlsrpt_reporter.deliver.record import parse_record

RECORD = parse_record("v=TLSRPTv1; rua=mailto:tls@example.org,https://r.example.net/v1")


def test_targets_keep_the_records_order_and_mark_mailto() -> None:
    assert plan.targets(RECORD) == ["mailto:tls@example.org", "https://r.example.net/v1"]


def test_a_target_that_reached_the_daily_cap_is_given_up_the_others_stay_pending() -> None:
    found = plan.destinations(RECORD, {"https://r.example.net/v1": 3}, cap=3)
    assert found == [
        plan.Destination("mailto:tls@example.org", "pending"),
        plan.Destination("https://r.example.net/v1", "given-up", plan.CAP_NOTE),
    ]
    below = plan.destinations(RECORD, {"https://r.example.net/v1": 2}, cap=3)
    assert {d.state for d in below} == {"pending"}


def test_after_a_failure_the_next_attempt_backs_off_until_retry_for_runs_out() -> None:
    rng = random.Random(1)
    first = plan.after_failure(0, None, 1000.0, 86400.0, rng)
    assert not first.give_up and first.attempts == 1 and first.first_attempt == 1000.0
    assert 1000.0 + 45 <= first.next_attempt <= 1000.0 + 75
    later = plan.after_failure(5, 1000.0, 50_000.0, 86400.0, rng)
    assert not later.give_up and later.next_attempt > 50_000.0 + 15 * 60 * 0.75
    done = plan.after_failure(9, 1000.0, 1000.0 + 86400.0, 86400.0, rng)
    assert done.give_up


# 2026-03-02 00:00:00 UTC
NOW = 1_772_409_600.0


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (503, "120", NOW + 120),
        (429, " 0 ", NOW),
        (503, "Mon, 02 Mar 2026 03:00:00 GMT", NOW + 3 * 3600),  # an HTTP-date (IMF-fixdate)
        (503, "Monday, 02-Mar-26 03:00:00 GMT", NOW + 3 * 3600),  # its obsolete RFC 850 form
        (429, "Mon, 02 Mar 2026 03:00:00", NOW + 3 * 3600),  # no zone: read as UTC
        (500, "120", None),  # only 429 and 503 carry a Retry-After that counts
        (None, "120", None),
        (503, "", None),
        (503, "soon", None),
        (503, "-5", None),
        (503, "9" * 13, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date_on_429_and_503(
    status: int | None, header: str, expected: float | None
) -> None:
    assert plan.retry_after(status, header, NOW) == expected


def test_a_retry_after_inside_the_retry_window_sets_the_next_attempt() -> None:
    first, window, backoff_at = NOW - 3600, 86400.0, NOW + 60
    assert plan.next_attempt(backoff_at, NOW + 7200, NOW, first, window) == NOW + 7200
    # Past the window (retry_for from the first attempt): the backoff decides.
    assert plan.next_attempt(backoff_at, first + window + 1, NOW, first, window) == backoff_at
    assert plan.next_attempt(backoff_at, None, NOW, first, window) == backoff_at
    # A time already past is now, not earlier.
    assert plan.next_attempt(backoff_at, NOW - 10, NOW, first, window) == NOW


def test_after_failure_takes_the_receivers_time_inside_the_window_only() -> None:
    asked = plan.after_failure(1, NOW - 60, NOW, 86400.0, random.Random(1), retry_at=NOW + 9000)
    assert (asked.give_up, asked.attempts, asked.next_attempt) == (False, 2, NOW + 9000)
    late = plan.after_failure(1, NOW - 60, NOW, 3600.0, random.Random(1), retry_at=NOW + 9000)
    assert NOW + 90 <= late.next_attempt <= NOW + 150  # the backoff of a second failure
    done = plan.after_failure(5, NOW - 3600, NOW, 3600.0, random.Random(1), retry_at=NOW + 60)
    assert done.give_up


def test_each_destination_has_its_own_message_id_and_keeps_it() -> None:
    stem = "tlsrpt.2026.03.01.a1b2.13c51305c1cf2666@example.net"
    one = plan.destination_message_id(stem, "mailto:a@example.com")
    assert one == plan.destination_message_id(stem, "mailto:a@example.com")
    assert one != plan.destination_message_id(stem, "mailto:b@example.com")
    assert one.startswith("tlsrpt.2026.03.01.a1b2.13c51305c1cf2666.")
    assert one.endswith("@example.net")
    assert mail.check_msg_id(one, "Message-ID") == one
