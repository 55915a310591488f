"""The aggregate's memory bounds in bytes and in failure details per policy, and the decoder's
cache bound in bytes."""

from __future__ import annotations

from tlsrpt_reporter.model import Datagram, FailureDetail, Policy, PolicyResult
from tlsrpt_reporter.wire.aggregate import (
    C_ACCEPTED,
    C_DETAILS_CAPPED,
    C_DROPPED_MEMORY,
    C_FAILURE_DETAILS,
    C_SESSIONS,
    Aggregate,
    detail_bytes,
    policy_key_bytes,
)
from tlsrpt_reporter.wire.decode import CachingDecoder
from tlsrpt_reporter.wire.encode import datagram

DAY = "2026-03-01"
RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"
STS = Policy("sts", "example.com", ("version: STSv1", "mode: enforce"), ("mail.example.com",))
OTHER = Policy("no-policy-found", "other.example")


def detail(i: int, text: str = "") -> FailureDetail:
    return FailureDetail("certificate-expired", failure_reason_code=f"reason {i} {text}")


def failing(policy: Policy, *details: FailureDetail, domain: str = "example.com") -> Datagram:
    result = PolicyResult(policy, failed=True, failure_details=details)
    return Datagram(domain=domain, record=RECORD, results=(result,))


def key(policy: Policy = STS, domain: str = "example.com") -> tuple[str, str, str, Policy]:
    return (DAY, domain, RECORD, policy)


def counter(agg: Aggregate, name: str) -> int:
    return agg.counters.get((DAY, name), 0)


def test_held_bytes_grow_with_new_keys_and_their_strings_only() -> None:
    agg = Aggregate()
    short = failing(STS, detail(1))
    agg.add(DAY, 1.0, short)
    first = agg.held_bytes
    assert first == policy_key_bytes(key()) + detail_bytes(detail(1))
    agg.add(DAY, 2.0, short, times=50)
    assert agg.held_bytes == first, "counting a held key again costs nothing"
    agg.add(DAY, 3.0, failing(STS, detail(2, "x" * 1000)))
    assert agg.held_bytes - first == detail_bytes(detail(2, "x" * 1000)) > 1000


def test_take_hands_over_the_held_bytes_and_starts_from_zero() -> None:
    agg = Aggregate()
    agg.add(DAY, 1.0, failing(STS, detail(1)))
    held = agg.held_bytes
    taken = agg.take()
    assert (taken.held_bytes, agg.held_bytes) == (held, 0)


def test_past_max_bytes_new_keys_are_dropped_and_held_ones_still_count() -> None:
    agg = Aggregate(max_bytes=5000)
    n = 0
    while agg.add(DAY, 1.0, failing(STS, detail(n, "y" * 500))):
        n += 1
    assert 5000 <= agg.held_bytes < 5000 + detail_bytes(detail(n, "y" * 500))
    assert counter(agg, C_DROPPED_MEMORY) == 1
    assert agg.add(DAY, 2.0, failing(STS, detail(0, "y" * 500)), times=3)
    assert agg.details[(key(), detail(0, "y" * 500))] == 4


def test_bytes_reserved_for_a_write_in_flight_count_against_max_bytes() -> None:
    agg = Aggregate(max_bytes=5000)
    agg.reserved_bytes = 5000
    assert not agg.add(DAY, 1.0, failing(STS, detail(1)))
    agg.reserved_bytes = 0
    assert agg.add(DAY, 1.0, failing(STS, detail(1)))


def test_past_max_details_a_policy_keeps_its_sessions_and_leaves_new_details_out() -> None:
    agg = Aggregate(max_details=3)
    for i in range(5):
        assert agg.add(DAY, 1.0, failing(STS, detail(i), detail(100 + i)))
    assert agg.add(DAY, 1.0, failing(OTHER, detail(0), domain="other.example"))
    assert agg.policies[key()].failed == 5, "every session counts"
    assert counter(agg, C_SESSIONS) == counter(agg, C_ACCEPTED) == 6
    assert len([k for k, _ in agg.details if k == key()]) == 3
    assert counter(agg, C_FAILURE_DETAILS) == 11
    assert counter(agg, C_DETAILS_CAPPED) == 7
    assert agg.details_capped == 7
    # Another policy has its own allowance; details already held still count.
    assert agg.details[(key(OTHER, "other.example"), detail(0))] == 1
    agg.add(DAY, 2.0, failing(STS, detail(0)))
    assert agg.details[(key(), detail(0))] == 2
    assert counter(agg, C_DETAILS_CAPPED) == 7


def test_the_details_cap_starts_afresh_after_take_and_survives_a_merge_back() -> None:
    agg = Aggregate(max_details=2)
    agg.add(DAY, 1.0, failing(STS, detail(1), detail(2)))
    taken = agg.take()
    assert agg.add(DAY, 1.0, failing(STS, detail(3), detail(4)))
    assert counter(agg, C_DETAILS_CAPPED) == 0
    agg.merge(taken)  # a failed write gives its keys back: four held now
    assert agg.held_bytes == taken.held_bytes + policy_key_bytes(key()) + sum(
        detail_bytes(detail(i)) for i in (3, 4)
    )
    agg.add(DAY, 2.0, failing(STS, detail(5)))
    assert counter(agg, C_DETAILS_CAPPED) == 1
    assert len(agg.details) == 4


def test_the_decoder_cache_is_bounded_in_bytes() -> None:
    policy = {"policy-type": 9, "t": 0, "f": 0}
    grams = [datagram(f"d{i}.example", [policy], "x" * 1000) for i in range(10)]
    decoder = CachingDecoder(max_bytes=5000)
    first = decoder.decode(grams[0])
    assert decoder.decode(grams[0]) is first, "a repeated datagram comes from the cache"
    for data in grams[1:]:
        decoder.decode(data)
    again = decoder.decode(grams[0])
    assert again == first and again is not first, "5,000 bytes cannot hold ten of 1,000"
