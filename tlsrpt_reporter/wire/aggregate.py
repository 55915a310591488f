"""In-memory aggregate of decoded datagrams: counters keyed by day, domain, record and policy.

Pure bookkeeping (no I/O, no clock): the caller passes the UTC day and receive time. The
collector folds datagrams in here and periodically takes the contents to the store; replay and
log adapters use the same code, so every input counts sessions the same way (docs/protocol.md
"How one datagram counts").
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from tlsrpt_reporter.model import Datagram, FailureDetail, Policy

# (day "YYYY-MM-DD", domain, record, policy)
PolicyKey = tuple[str, str, str, Policy]
# (policy key, failure detail)
DetailKey = tuple[PolicyKey, FailureDetail]

# Per-day counter names (besides "rejected:<reason>", the decoder's notes and wire forms).
C_RECEIVED = "received"
C_ACCEPTED = "accepted"
C_REJECTED = "rejected"
C_SESSIONS = "sessions"
C_FAILURES = "failures"
C_FAILURE_DETAILS = "failure-details"
C_DROPPED_MEMORY = "dropped:memory-full"
# Failure details of accepted sessions left out because their policy already held
# ``max_failure_details`` distinct ones; the sessions themselves still count.
C_DETAILS_CAPPED = "failure-details-capped"

# What a held key costs beyond its strings (the dict slot, the key tuple, the counts object,
# the frozen Policy or FailureDetail): an estimate erring high, not an accounting (tracemalloc
# on CPython 3.11: about 280 bytes for a policy key and a detail key together, objects aside).
_POLICY_KEY_COST = 400
_DETAIL_KEY_COST = 300
_size = sys.getsizeof


@dataclass(slots=True)
class PolicyCounts:
    """Counters of one (day, domain, record, policy)."""

    successful: int = 0
    failed: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0


@dataclass
class Aggregate:
    """Counts not yet written to the store.

    ``max_keys`` and ``max_bytes`` bound memory when the store cannot be written: past either,
    sessions for keys not already held are dropped and counted as ``dropped:memory-full``
    (counts for keys already held still add up, which costs nothing). :attr:`held_bytes` is
    an estimate of what the held keys take (their strings and a fixed cost per key).
    ``max_details`` (0: no cap) bounds the distinct failure details held per policy: further
    new ones are left out and counted as ``failure-details-capped``, their sessions still
    count.
    """

    max_keys: int = 2_000_000
    policies: dict[PolicyKey, PolicyCounts] = field(default_factory=dict)
    details: dict[DetailKey, int] = field(default_factory=dict)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    # Keys (and their estimated bytes) taken for a write that has not finished yet: they
    # count against the bounds, because a failed write merges them back.
    reserved: int = 0
    reserved_bytes: int = 0
    max_bytes: int = 1 << 62
    max_details: int = 0
    held_bytes: int = 0
    # Distinct failure details held per policy key, for max_details; and how many entries
    # that cap left out since this aggregate was made (take() does not reset it).
    details_per_policy: dict[PolicyKey, int] = field(default_factory=dict)
    details_capped: int = 0

    def __len__(self) -> int:
        return len(self.policies) + len(self.details)

    def is_empty(self) -> bool:
        """True when there is nothing to write."""
        return not (self.policies or self.details or self.counters)

    def count(self, day: str, name: str, n: int = 1) -> None:
        """Add ``n`` to the per-day counter ``name``."""
        key = (day, name)
        self.counters[key] = self.counters.get(key, 0) + n

    def add(
        self,
        day: str,
        now: float,
        datagram: Datagram,
        times: int = 1,
        first_seen: float | None = None,
    ) -> bool:
        """Fold ``times`` identical copies of one accepted datagram in, seen between
        ``first_seen`` (default ``now``) and ``now``; False when dropped for lack of room.

        Counting per docs/protocol.md: one session per policy, failed when its `f` is 1, and one
        count per failure detail entry.
        """
        return not self.add_many(day, now, ((datagram, times),), first_seen)

    def add_many(
        self,
        day: str,
        now: float,
        entries: Iterable[tuple[Datagram, int]],
        first_seen: float | None = None,
    ) -> list[tuple[Datagram, int]]:
        """:meth:`add` for each (datagram, times) of ``entries``, all of one day and seen
        between ``first_seen`` and ``now``; returns those dropped for lack of room.

        The collector's hot path: the per-day counters are summed here and added once.
        """
        policies, details = self.policies, self.details
        first = now if first_seen is None else first_seen
        max_keys = self.max_keys - self.reserved
        max_bytes = self.max_bytes - self.reserved_bytes
        dropped: list[tuple[Datagram, int]] = []
        received = sessions = failures = detail_count = capped = 0
        noted: dict[str, int] = {}
        for datagram, times in entries:
            received += times
            domain, record, results = datagram.domain, datagram.record, datagram.results
            if (
                len(policies) + len(details) >= max_keys or self.held_bytes >= max_bytes
            ) and not self._holds(day, datagram):
                dropped.append((datagram, times))
                continue
            sessions += len(results) * times
            for result in results:
                key = (day, domain, record, result.policy)
                counts = policies.get(key)
                if counts is None:
                    counts = policies[key] = PolicyCounts(first_seen=first, last_seen=now)
                    self.held_bytes += policy_key_bytes(key)
                else:
                    # Batches can be folded out of order (clocks step back): keep the extremes.
                    counts.first_seen = min(counts.first_seen, first)
                    counts.last_seen = max(counts.last_seen, now)
                if result.failed:
                    counts.failed += times
                    failures += times
                else:
                    counts.successful += times
                for detail in result.failure_details:
                    detail_count += times
                    dkey = (key, detail)
                    held = details.get(dkey)
                    if held is not None:
                        details[dkey] = held + times
                    elif self._admit_detail(key, detail):
                        details[dkey] = times
                    else:
                        capped += times
            for note in datagram.notes:
                noted[note] = noted.get(note, 0) + times
            if datagram.wire_form:
                noted[datagram.wire_form] = noted.get(datagram.wire_form, 0) + times
        self.details_capped += capped
        lost = sum(times for _datagram, times in dropped)
        counters = self.counters
        for name, n in (
            (C_RECEIVED, received),
            (C_ACCEPTED, received - lost),
            (C_SESSIONS, sessions),
            (C_FAILURES, failures),
            (C_FAILURE_DETAILS, detail_count),
            (C_DETAILS_CAPPED, capped),
            (C_DROPPED_MEMORY, lost),
            *noted.items(),
        ):
            if n:
                ckey = (day, name)
                counters[ckey] = counters.get(ckey, 0) + n
        return dropped

    def _holds(self, day: str, datagram: Datagram) -> bool:
        """Whether every key ``datagram`` counts under is held already (it costs no room)."""
        for result in datagram.results:
            key = (day, datagram.domain, datagram.record, result.policy)
            if key not in self.policies:
                return False
            if any((key, detail) not in self.details for detail in result.failure_details):
                return False
        return True

    def _admit_detail(self, key: PolicyKey, detail: FailureDetail) -> bool:
        """Whether a failure detail new to ``key`` may be held (and account for it)."""
        held = self.details_per_policy.get(key, 0)
        if self.max_details and held >= self.max_details:
            return False
        self.details_per_policy[key] = held + 1
        self.held_bytes += detail_bytes(detail)
        return True

    def reject(self, day: str, reason: str, times: int = 1) -> None:
        """Count ``times`` rejected datagrams."""
        self.count(day, C_RECEIVED, times)
        self.count(day, C_REJECTED, times)
        self.count(day, f"{C_REJECTED}:{reason}", times)

    def take(self) -> Aggregate:
        """Move everything into a new Aggregate and leave this one empty."""
        taken = Aggregate(
            max_keys=self.max_keys,
            policies=self.policies,
            details=self.details,
            counters=self.counters,
            max_bytes=self.max_bytes,
            max_details=self.max_details,
            held_bytes=self.held_bytes,
            details_per_policy=self.details_per_policy,
        )
        self.policies, self.details, self.counters = {}, {}, {}
        self.details_per_policy = {}
        self.held_bytes = 0
        return taken

    def merge(self, other: Aggregate) -> None:
        """Add ``other``'s counts into this one (used to keep data a failed write returned).

        The bounds are not applied here: the data was already admitted once. Its estimated
        bytes are added whole (keys held on both sides are counted twice, erring high).
        """
        self.held_bytes += other.held_bytes
        per_policy = self.details_per_policy
        for key, detail in other.details:
            if (key, detail) not in self.details:
                per_policy[key] = per_policy.get(key, 0) + 1
        for key, c in other.policies.items():
            mine = self.policies.get(key)
            if mine is None:
                self.policies[key] = c
                continue
            mine.successful += c.successful
            mine.failed += c.failed
            mine.first_seen = min(mine.first_seen, c.first_seen)
            mine.last_seen = max(mine.last_seen, c.last_seen)
        _add_counts(self.details, other.details.items())
        _add_counts(self.counters, other.counters.items())


def policy_key_bytes(key: PolicyKey) -> int:
    """Estimated bytes one held policy key takes: its strings and a fixed cost."""
    _day, domain, record, p = key
    return (
        _POLICY_KEY_COST
        + _size(domain)
        + _size(record)
        + _size(p.policy_domain)
        + sum(map(_size, p.policy_string))
        + sum(map(_size, p.mx_host))
    )


def detail_bytes(detail: FailureDetail) -> int:
    """Estimated bytes one held failure detail takes: its strings and a fixed cost."""
    # filter(None): the optional values are None or non-empty strings.
    return _DETAIL_KEY_COST + sum(map(_size, filter(None, detail.optional_values())))


_K = TypeVar("_K")


def _add_counts(target: dict[_K, int], items: Iterable[tuple[_K, int]]) -> None:
    for key, n in items:
        target[key] = target.get(key, 0) + n
