"""Which host a destination is on, and the per-host cap of one report (deliver.plan): pure
rules, no DNS, no database (RFC 8460 §7: a record can list many rua on one host)."""

from __future__ import annotations

import pytest

from tlsrpt_reporter.deliver import plan
from tlsrpt_reporter.deliver.record import parse_record


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("https://Reports.Example:8443/v1", "reports.example"),
        ("https://reports.example./v1", "reports.example"),
        ("https://[2001:db8::1]:443/x", "2001:db8::1"),
        ("mailto:TLS@Example.COM", "@example.com"),
        ("mailto:a@b.example", "@b.example"),
    ],
)
def test_the_host_of_a_destination_is_its_lower_case_name_without_port(
    target: str, host: str
) -> None:
    assert plan.host_of(target) == host


def test_mail_and_https_on_the_same_name_are_different_hosts() -> None:
    assert plan.host_of("mailto:x@example.com") != plan.host_of("https://example.com/r")


def test_beyond_the_per_host_cap_destinations_are_skipped_with_the_key_named() -> None:
    record = parse_record(
        "v=TLSRPTv1; rua=https://r.example/1,https://R.example:444/2,mailto:a@r.example,"
        "https://r.example/3,https://other.example/1,mailto:b@r.example,mailto:c@r.example"
    )
    found = {d.target: d for d in plan.destinations(record, {}, cap=10, per_host=2)}
    assert [t for t, d in found.items() if d.state == "pending"] == [
        "https://r.example/1",
        "https://R.example:444/2",
        "mailto:a@r.example",
        "https://other.example/1",
        "mailto:b@r.example",
    ]
    skipped = [d for d in found.values() if d.state == "skipped"]
    assert [d.target for d in skipped] == ["https://r.example/3", "mailto:c@r.example"]
    assert "reporter.max_destinations_per_host = 2" in skipped[0].note
    assert "r.example" in skipped[0].note


def test_a_destination_at_its_daily_cap_leaves_its_host_slot_to_the_next() -> None:
    record = parse_record("v=TLSRPTv1; rua=https://r.example/1,https://r.example/2")
    found = plan.destinations(record, {"https://r.example/1": 5}, cap=5, per_host=1)
    assert [(d.target, d.state) for d in found] == [
        ("https://r.example/1", "given-up"),
        ("https://r.example/2", "pending"),
    ]


def test_without_a_per_host_cap_every_destination_is_pending() -> None:
    record = parse_record("v=TLSRPTv1; rua=https://r.example/1,https://r.example/2")
    assert {d.state for d in plan.destinations(record, {}, cap=5)} == {"pending"}


def test_deliveries_are_grouped_by_host_in_the_order_they_came() -> None:
    due = ["https://b.example/1", "mailto:x@a.example", "https://b.example/2", "https://c.example/"]
    assert plan.by_host(due, plan.host_of) == [
        ["https://b.example/1", "https://b.example/2"],
        ["mailto:x@a.example"],
        ["https://c.example/"],
    ]
