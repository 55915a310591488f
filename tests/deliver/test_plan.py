"""The pure rules of a delivery pass (tlsrpt_reporter.deliver.plan): no DNS, no database."""

from __future__ import annotations

import random

from tlsrpt_reporter.deliver import plan
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
