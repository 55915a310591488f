"""Aggregate.add_many, the collector's fold, counts exactly as Aggregate.add one by one."""

from __future__ import annotations

import collections

from tlsrpt_reporter.demo import samplegen
from tlsrpt_reporter.model import Datagram
from tlsrpt_reporter.wire.aggregate import C_ACCEPTED, C_DROPPED_MEMORY, C_RECEIVED, Aggregate
from tlsrpt_reporter.wire.decode import decode

DAY = "2026-03-01"


def folded(seed: int, count: int) -> list[tuple[Datagram, int]]:
    counts = collections.Counter(samplegen.sessions(seed, 200, count))
    return [(decode(data), times) for data, times in counts.items()]


def snapshot(agg: Aggregate) -> tuple[object, ...]:
    policies = {
        key: (c.successful, c.failed, c.first_seen, c.last_seen) for key, c in agg.policies.items()
    }
    return policies, dict(agg.details), dict(agg.counters), agg.held_bytes, agg.details_capped


def test_add_many_counts_what_add_counts() -> None:
    entries = folded(1, 4000)
    one_by_one, at_once = Aggregate(max_details=3), Aggregate(max_details=3)
    for datagram, times in entries:
        assert one_by_one.add(DAY, 20.0, datagram, times, first_seen=10.0)
    assert at_once.add_many(DAY, 20.0, entries, first_seen=10.0) == []
    assert snapshot(at_once) == snapshot(one_by_one)


def test_add_many_drops_what_add_drops_when_full() -> None:
    entries = folded(2, 3000)
    limit = len(entries) // 3
    one_by_one, at_once = Aggregate(max_keys=limit), Aggregate(max_keys=limit)
    dropped = [
        (datagram, times)
        for datagram, times in entries
        if not one_by_one.add(DAY, 20.0, datagram, times)
    ]
    assert dropped
    assert at_once.add_many(DAY, 20.0, entries) == dropped
    assert snapshot(at_once) == snapshot(one_by_one)
    received = sum(times for _datagram, times in entries)
    lost = sum(times for _datagram, times in dropped)
    assert at_once.counters[(DAY, C_RECEIVED)] == received
    assert at_once.counters[(DAY, C_ACCEPTED)] == received - lost
    assert at_once.counters[(DAY, C_DROPPED_MEMORY)] == lost
