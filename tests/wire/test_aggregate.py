"""Tests of the in-memory aggregate (docs/protocol.md, "How a datagram counts")."""

from __future__ import annotations

from tlsrpt_reporter.model import Datagram, FailureDetail, Policy, PolicyResult
from tlsrpt_reporter.wire import decode as wire
from tlsrpt_reporter.wire.aggregate import (
    C_ACCEPTED,
    C_DROPPED_MEMORY,
    C_FAILURE_DETAILS,
    C_FAILURES,
    C_RECEIVED,
    C_REJECTED,
    C_SESSIONS,
    Aggregate,
)
from tlsrpt_reporter.wire.encode import datagram

DAY = "2026-03-01"
NEXT_DAY = "2026-03-02"
RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"
STS = Policy("sts", "example.com", ("version: STSv1", "mode: enforce"), ("mail.example.com",))
TLSA = Policy("tlsa", "mx.example.com", ("3 1 1 AB",))
EXPIRED = FailureDetail("certificate-expired", sending_mta_ip="192.0.2.10")
MISMATCH = FailureDetail("certificate-host-mismatch", receiving_ip="198.51.100.7")


def dgram(
    *results: PolicyResult, domain: str = "example.com", notes: tuple[str, ...] = ()
) -> Datagram:
    return Datagram(domain=domain, record=RECORD, results=results, notes=notes)


def ok(policy: Policy = STS) -> PolicyResult:
    return PolicyResult(policy, failed=False)


def failed(policy: Policy = STS, *details: FailureDetail) -> PolicyResult:
    return PolicyResult(policy, failed=True, failure_details=details)


def key(policy: Policy = STS, domain: str = "example.com", day: str = DAY) -> tuple:
    return (day, domain, RECORD, policy)


def counter(agg: Aggregate, name: str, day: str = DAY) -> int:
    return agg.counters.get((day, name), 0)


def test_successful_policy_counts_one_successful_session() -> None:
    agg = Aggregate()
    assert agg.add(DAY, 100.0, dgram(ok()))
    counts = agg.policies[key()]
    assert (counts.successful, counts.failed) == (1, 0)
    assert agg.details == {}


def test_failed_policy_counts_one_failed_session_and_each_detail_once() -> None:
    agg = Aggregate()
    agg.add(DAY, 100.0, dgram(failed(TLSA, EXPIRED, MISMATCH, EXPIRED)))
    counts = agg.policies[key(TLSA)]
    assert (counts.successful, counts.failed) == (0, 1)
    assert agg.details == {(key(TLSA), EXPIRED): 2, (key(TLSA), MISMATCH): 1}


def test_each_policy_in_a_datagram_is_its_own_session() -> None:
    agg = Aggregate()
    agg.add(DAY, 100.0, dgram(ok(STS), failed(TLSA, EXPIRED)))
    assert (agg.policies[key(STS)].successful, agg.policies[key(STS)].failed) == (1, 0)
    assert (agg.policies[key(TLSA)].successful, agg.policies[key(TLSA)].failed) == (0, 1)
    assert counter(agg, C_SESSIONS) == 2
    assert counter(agg, C_FAILURES) == 1


def test_success_with_failure_details_still_counts_the_details() -> None:
    agg = Aggregate()
    agg.add(DAY, 100.0, dgram(PolicyResult(STS, failed=False, failure_details=(EXPIRED,))))
    counts = agg.policies[key()]
    assert (counts.successful, counts.failed) == (1, 0)
    assert agg.details == {(key(), EXPIRED): 1}
    assert counter(agg, C_FAILURE_DETAILS) == 1
    assert counter(agg, C_FAILURES) == 0


def test_failure_without_details_counts_a_failed_session_only() -> None:
    agg = Aggregate()
    agg.add(DAY, 100.0, dgram(failed(STS)))
    assert agg.policies[key()].failed == 1
    assert agg.details == {}
    assert counter(agg, C_FAILURES) == 1
    assert counter(agg, C_FAILURE_DETAILS) == 0


def test_repeated_datagrams_add_up() -> None:
    agg = Aggregate()
    for _ in range(3):
        agg.add(DAY, 100.0, dgram(ok()))
    for _ in range(2):
        agg.add(DAY, 100.0, dgram(failed(STS, EXPIRED)))
    counts = agg.policies[key()]
    assert (counts.successful, counts.failed) == (3, 2)
    assert agg.details[(key(), EXPIRED)] == 2


def test_day_counters_count_datagrams_sessions_failures_and_details() -> None:
    agg = Aggregate()
    agg.add(DAY, 100.0, dgram(ok(STS), failed(TLSA, EXPIRED, MISMATCH)))
    agg.add(DAY, 101.0, dgram(failed(STS)))
    assert counter(agg, C_RECEIVED) == 2
    assert counter(agg, C_ACCEPTED) == 2
    assert counter(agg, C_SESSIONS) == 3
    assert counter(agg, C_FAILURES) == 2
    assert counter(agg, C_FAILURE_DETAILS) == 2
    assert counter(agg, C_REJECTED) == 0


def test_decoder_notes_become_day_counters() -> None:
    agg = Aggregate()
    notes = (wire.NOTE_UNKNOWN_KEYS, wire.NOTE_UTF8_REPAIRED)
    agg.add(DAY, 100.0, dgram(ok(), notes=notes))
    agg.add(DAY, 100.0, dgram(ok(), notes=(wire.NOTE_UTF8_REPAIRED,)))
    assert counter(agg, wire.NOTE_UNKNOWN_KEYS) == 1
    assert counter(agg, wire.NOTE_UTF8_REPAIRED) == 2


def test_decoded_protocol_datagram_counts_per_protocol_md() -> None:
    data = datagram(
        "Example.COM.",
        [
            {"policy-type": 2, "policy-domain": "example.com", "t": 0, "f": 0},
            {
                "policy-type": 1,
                "failure-details": [{"c": 304}, {"c": 304}, {"c": 203, "s": "192.0.2.1"}],
                "t": 3,
                "f": 1,
            },
        ],
        RECORD,
    )
    agg = Aggregate()
    agg.add(DAY, 100.0, wire.decode(data))
    sts = key(Policy("sts", "example.com"))
    tlsa = key(Policy("tlsa", "example.com"))
    assert (agg.policies[sts].successful, agg.policies[sts].failed) == (1, 0)
    assert (agg.policies[tlsa].successful, agg.policies[tlsa].failed) == (0, 1)
    assert agg.details == {
        (tlsa, FailureDetail("tlsa-invalid")): 2,
        (tlsa, FailureDetail("certificate-not-trusted", sending_mta_ip="192.0.2.1")): 1,
    }
    assert counter(agg, C_FAILURE_DETAILS) == 3


def test_first_and_last_seen_follow_the_receive_times() -> None:
    agg = Aggregate()
    agg.add(DAY, 100.0, dgram(ok()))
    agg.add(DAY, 250.0, dgram(ok()))
    counts = agg.policies[key()]
    assert (counts.first_seen, counts.last_seen) == (100.0, 250.0)


def test_two_days_held_at_once_stay_separate() -> None:
    agg = Aggregate()
    agg.add(DAY, 100.0, dgram(failed(STS, EXPIRED)))
    agg.add(NEXT_DAY, 90000.0, dgram(ok()))
    agg.add(NEXT_DAY, 90001.0, dgram(ok()))
    assert (agg.policies[key()].successful, agg.policies[key()].failed) == (0, 1)
    day2 = agg.policies[key(day=NEXT_DAY)]
    assert (day2.successful, day2.failed) == (2, 0)
    assert (key(day=NEXT_DAY), EXPIRED) not in agg.details
    assert counter(agg, C_RECEIVED) == 1
    assert counter(agg, C_RECEIVED, NEXT_DAY) == 2
    assert counter(agg, C_FAILURES, NEXT_DAY) == 0


def test_reject_counts_received_rejected_and_the_reason() -> None:
    agg = Aggregate()
    agg.reject(DAY, "not-json")
    agg.reject(DAY, "not-json")
    agg.reject(DAY, "oversize")
    assert counter(agg, C_RECEIVED) == 3
    assert counter(agg, C_REJECTED) == 3
    assert counter(agg, "rejected:not-json") == 2
    assert counter(agg, "rejected:oversize") == 1
    assert counter(agg, C_ACCEPTED) == 0
    assert agg.policies == {}


def test_count_adds_to_a_named_counter() -> None:
    agg = Aggregate()
    agg.count(DAY, "custom", 5)
    agg.count(DAY, "custom")
    assert counter(agg, "custom") == 6


def test_take_returns_everything_and_leaves_the_aggregate_empty() -> None:
    agg = Aggregate(max_keys=1234)
    agg.add(DAY, 100.0, dgram(failed(STS, EXPIRED)))
    agg.reject(DAY, "not-json")
    taken = agg.take()
    assert agg.is_empty()
    assert len(agg) == 0
    assert not taken.is_empty()
    assert taken.policies[key()].failed == 1
    assert taken.details == {(key(), EXPIRED): 1}
    assert counter(taken, "rejected:not-json") == 1
    assert taken.max_keys == 1234
    # The emptied aggregate counts afresh, without touching what was taken.
    agg.add(DAY, 200.0, dgram(failed(STS, EXPIRED)))
    assert taken.details == {(key(), EXPIRED): 1}
    assert agg.details == {(key(), EXPIRED): 1}


def test_counters_alone_make_an_aggregate_non_empty() -> None:
    agg = Aggregate()
    assert agg.is_empty()
    agg.reject(DAY, "not-json")
    assert not agg.is_empty()


def test_merge_adds_counts_and_keeps_the_widest_time_span() -> None:
    old = Aggregate()
    old.add(DAY, 100.0, dgram(failed(STS, EXPIRED)))
    old.add(DAY, 300.0, dgram(ok()))
    old.reject(DAY, "not-json")
    new = Aggregate()
    new.add(DAY, 200.0, dgram(failed(STS, EXPIRED)))
    new.add(DAY, 400.0, dgram(ok(TLSA)))
    new.merge(old)
    counts = new.policies[key()]
    assert (counts.successful, counts.failed) == (1, 2)
    assert (counts.first_seen, counts.last_seen) == (100.0, 300.0)
    assert new.policies[key(TLSA)].successful == 1
    assert new.details[(key(), EXPIRED)] == 2
    assert counter(new, C_RECEIVED) == 5
    assert counter(new, C_SESSIONS) == 4
    assert counter(new, "rejected:not-json") == 1


def test_merge_keeps_its_own_times_when_they_are_wider() -> None:
    held = Aggregate()
    held.add(DAY, 50.0, dgram(ok()))
    held.add(DAY, 500.0, dgram(ok()))
    returned = Aggregate()
    returned.add(DAY, 100.0, dgram(ok()))
    returned.add(DAY, 300.0, dgram(ok()))
    held.merge(returned)
    counts = held.policies[key()]
    assert (counts.first_seen, counts.last_seen) == (50.0, 500.0)
    assert counts.successful == 4


def test_merge_ignores_the_key_bound() -> None:
    held = Aggregate(max_keys=1)
    returned = Aggregate()
    for i in range(5):
        returned.add(DAY, 100.0, dgram(ok(), domain=f"d{i}.example"))
    held.merge(returned)
    assert len(held.policies) == 5


def test_full_aggregate_drops_datagrams_that_need_new_keys() -> None:
    agg = Aggregate(max_keys=1)
    # One policy key: the bound is reached.
    assert agg.add(DAY, 100.0, dgram(ok()))
    assert len(agg) == 1
    assert not agg.add(DAY, 101.0, dgram(ok(), domain="other.example"))
    assert not agg.add(DAY, 102.0, dgram(ok(TLSA)))
    assert not agg.add(DAY, 103.0, dgram(failed(STS, EXPIRED)))
    assert len(agg) == 1
    assert "other.example" not in {k[1] for k in agg.policies}
    assert counter(agg, C_DROPPED_MEMORY) == 3
    assert counter(agg, C_RECEIVED) == 4
    assert counter(agg, C_ACCEPTED) == 1
    assert counter(agg, C_SESSIONS) == 1
    counts = agg.policies[key()]
    assert (counts.successful, counts.failed) == (1, 0)


def test_full_aggregate_still_counts_datagrams_for_keys_it_holds() -> None:
    agg = Aggregate(max_keys=2)
    assert agg.add(DAY, 100.0, dgram(failed(STS, EXPIRED)))
    assert len(agg) == 2  # the policy and its failure detail
    assert agg.add(DAY, 101.0, dgram(ok()))
    assert agg.add(DAY, 102.0, dgram(failed(STS, EXPIRED)))
    counts = agg.policies[key()]
    assert (counts.successful, counts.failed) == (1, 2)
    assert agg.details[(key(), EXPIRED)] == 2
    assert counter(agg, C_DROPPED_MEMORY) == 0
    assert counter(agg, C_ACCEPTED) == 3


def test_emptied_aggregate_admits_new_keys_again() -> None:
    agg = Aggregate(max_keys=1)
    agg.add(DAY, 100.0, dgram(ok()))
    assert not agg.add(DAY, 101.0, dgram(ok(), domain="other.example"))
    agg.take()
    assert agg.add(DAY, 102.0, dgram(ok(), domain="other.example"))


def test_times_counts_like_that_many_identical_datagrams() -> None:
    datagram_ = dgram(ok(STS), failed(TLSA, EXPIRED, MISMATCH), notes=(wire.NOTE_UNKNOWN_KEYS,))
    once_each = Aggregate()
    for _ in range(3):
        once_each.add(DAY, 100.0, datagram_)
    batched = Aggregate()
    assert batched.add(DAY, 100.0, datagram_, times=3)
    assert batched.policies == once_each.policies
    assert batched.details == once_each.details
    assert batched.counters == once_each.counters


def test_first_seen_argument_starts_the_time_span_of_a_batch() -> None:
    agg = Aggregate()
    agg.add(DAY, 180.0, dgram(ok()), times=4, first_seen=120.0)
    counts = agg.policies[key()]
    assert (counts.first_seen, counts.last_seen) == (120.0, 180.0)
    assert counts.successful == 4


def test_dropped_batch_counts_every_copy() -> None:
    agg = Aggregate(max_keys=1)
    agg.add(DAY, 100.0, dgram(ok()))
    assert not agg.add(DAY, 101.0, dgram(ok(), domain="other.example"), times=5)
    assert counter(agg, C_DROPPED_MEMORY) == 5
    assert counter(agg, C_RECEIVED) == 6


def test_receive_times_out_of_order_never_shrink_last_seen() -> None:
    agg = Aggregate()
    agg.add(DAY, 300.0, dgram(ok()))
    agg.add(DAY, 100.0, dgram(ok()))
    assert agg.policies[key()].last_seen == 300.0


def test_receive_times_out_of_order_keep_the_earliest_first_seen() -> None:
    agg = Aggregate()
    agg.add(DAY, 300.0, dgram(ok()))
    agg.add(DAY, 100.0, dgram(ok()))
    agg.add(DAY, 400.0, dgram(ok()), times=2, first_seen=50.0)
    assert agg.policies[key()].first_seen == 50.0


def test_keys_reserved_for_a_write_in_flight_count_against_max_keys() -> None:
    agg = Aggregate(max_keys=2)
    agg.reserved = 1
    assert agg.add(DAY, 100.0, dgram(ok()))
    assert not agg.add(DAY, 101.0, dgram(ok(), domain="other.example"))
    assert agg.add(DAY, 102.0, dgram(ok()))
    agg.reserved = 0
    assert agg.add(DAY, 103.0, dgram(ok(), domain="other.example"))
    assert counter(agg, C_DROPPED_MEMORY) == 1
