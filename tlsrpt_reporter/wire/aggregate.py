"""In-memory aggregate of decoded datagrams: counters keyed by day, domain, record and policy.

Pure bookkeeping (no I/O, no clock): the caller passes the UTC day and receive time. The
collector folds datagrams in here and periodically takes the contents to the store; replay and
log adapters use the same code, so every input counts sessions the same way (docs/protocol.md
"How one datagram counts").
"""

from __future__ import annotations

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

    ``max_keys`` bounds memory when the store cannot be written: past it, sessions for keys
    not already held are dropped and counted as ``dropped:memory-full`` (counts for keys
    already held still add up, which costs nothing).
    """

    max_keys: int = 2_000_000
    policies: dict[PolicyKey, PolicyCounts] = field(default_factory=dict)
    details: dict[DetailKey, int] = field(default_factory=dict)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    # Keys taken for a write that has not finished yet: they count against max_keys, because
    # a failed write merges them back.
    reserved: int = 0

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
        full = len(self) + self.reserved >= self.max_keys
        policy_keys = [(day, datagram.domain, datagram.record, r.policy) for r in datagram.results]
        if full and (
            any(k not in self.policies for k in policy_keys)
            or any(
                (k, d) not in self.details
                for k, r in zip(policy_keys, datagram.results, strict=True)
                for d in r.failure_details
            )
        ):
            self.count(day, C_RECEIVED, times)
            self.count(day, C_DROPPED_MEMORY, times)
            return False
        failures = details = 0
        first = now if first_seen is None else first_seen
        for key, result in zip(policy_keys, datagram.results, strict=True):
            counts = self.policies.get(key)
            if counts is None:
                counts = self.policies[key] = PolicyCounts(first_seen=first, last_seen=now)
            else:
                # Batches can be folded out of order (and clocks step back): keep the extremes.
                counts.first_seen = min(counts.first_seen, first)
                counts.last_seen = max(counts.last_seen, now)
            if result.failed:
                counts.failed += times
                failures += times
            else:
                counts.successful += times
            for detail in result.failure_details:
                dkey = (key, detail)
                self.details[dkey] = self.details.get(dkey, 0) + times
                details += times
        counters = self.counters
        for name, n in (
            (C_RECEIVED, times),
            (C_ACCEPTED, times),
            (C_SESSIONS, len(datagram.results) * times),
            (C_FAILURES, failures),
            (C_FAILURE_DETAILS, details),
            *((note, times) for note in datagram.notes),
            (datagram.wire_form, times if datagram.wire_form else 0),
        ):
            if n:
                ckey = (day, name)
                counters[ckey] = counters.get(ckey, 0) + n
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
        )
        self.policies, self.details, self.counters = {}, {}, {}
        return taken

    def merge(self, other: Aggregate) -> None:
        """Add ``other``'s counts into this one (used to keep data a failed write returned).

        The bound is not applied here: the data was already admitted once.
        """
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


_K = TypeVar("_K")


def _add_counts(target: dict[_K, int], items: Iterable[tuple[_K, int]]) -> None:
    for key, n in items:
        target[key] = target.get(key, 0) + n
