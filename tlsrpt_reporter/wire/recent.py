"""A bounded map that keeps what was used recently: the decoder's caches (:mod:`.decode`,
:mod:`.shared`).

Pure bookkeeping, no I/O. Two generations of plain dicts instead of an LRU list: a lookup that
hits the young one costs one dict lookup, as an unbounded dict would; a hit in the old one moves
the entry to the young one; when the young one is full it becomes the old one and the previous
old one is let go of at once. What is used keeps surviving, what is not is gone after two turns.
Against the blast benchmark's 23,000 distinct datagrams (benchmarks/ingest.py) this decoded
about a third fewer than clearing one dict of the same total size when full.

Optionally the generations size themselves to the traffic: a cache as large as the blast's
recurring datagrams needs saves most of the decoding, and is tens of megabytes of waste when
every datagram is new (a day's first datagram of each of 100,000 domains).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")

# The recently missed keys, as one bit each at their hash: 2**20 bits (128 KiB), forgotten after
# 2**15 marks, so that a key never seen reads as seen (a false "would have hit") < 3 % of the time.
_GHOST_BITS = 1 << 20
_GHOST_MARKS = 1 << 15
# Grow when a quarter of the misses were seen lately; shrink when hits and those together are
# under a sixteenth of the misses.
_GROW_SHARE = 4
_SHRINK_SHARE = 16


class Recent(Generic[_K, _V]):
    """Each generation holds at most ``max_entries`` entries and ``max_weight`` of their
    weight (``weigh(key)``, e.g. bytes; one heavier entry alone), so the whole twice that.

    With ``min_entries``, a generation starts at that many entries (and its share of the
    weight) and doubles, up to the maximum, while more than a quarter of the misses are keys
    missed lately too (a larger cache would have held them); it halves while hits and such
    misses together are rare (little recurs), letting the old generation go.
    """

    __slots__ = (
        "ghost",
        "ghost_hits",
        "hits",
        "limit",
        "limit_weight",
        "marks",
        "max_entries",
        "max_weight",
        "min_entries",
        "misses",
        "old",
        "weigh",
        "weight",
        "young",
    )

    def __init__(
        self,
        max_entries: int,
        max_weight: int,
        weigh: Callable[[_K], int],
        *,
        min_entries: int | None = None,
    ) -> None:
        self.max_entries = max(1, max_entries)
        self.max_weight = max_weight
        self.min_entries = self.max_entries if min_entries is None else max(1, min_entries)
        self.weigh = weigh
        self.young: dict[_K, _V] = {}
        self.old: dict[_K, _V] = {}
        self.weight = 0  # of the young generation
        self.limit = self.limit_weight = 0
        self._resize(min(self.min_entries, self.max_entries))
        self.ghost = bytearray(_GHOST_BITS // 8) if self.min_entries < self.max_entries else None
        self.hits = self.misses = self.ghost_hits = self.marks = 0

    def __len__(self) -> int:
        return len(self.young) + len(self.old)

    def get(self, key: _K) -> _V | None:
        """The value held for ``key``, or None."""
        value = self.young.get(key)
        if value is None:
            value = self.old.pop(key, None)
            if value is None:
                if self.ghost is not None:
                    self._missed(key)
                return None
            self.put(key, value)
        self.hits += 1
        return value

    def put(self, key: _K, value: _V) -> None:
        """Hold ``value`` for ``key`` (not already in the young generation)."""
        weight = self.weigh(key)
        if len(self.young) >= self.limit or self.weight + weight > self.limit_weight:
            self.old = self.young
            self.young = {}
            self.weight = 0
        self.young[key] = value
        self.weight += weight

    def clear(self) -> None:
        """Let go of everything."""
        self.young = {}
        self.old = {}
        self.weight = 0

    def _resize(self, entries: int) -> None:
        self.limit = entries
        self.limit_weight = self.max_weight * entries // self.max_entries

    def _missed(self, key: _K) -> None:
        assert self.ghost is not None
        bit = hash(key) & (_GHOST_BITS - 1)
        index, mask = bit >> 3, 1 << (bit & 7)
        if self.ghost[index] & mask:
            self.ghost_hits += 1
        else:
            self.ghost[index] |= mask
            self.marks += 1
            if self.marks >= _GHOST_MARKS:
                self.ghost = bytearray(_GHOST_BITS // 8)
                self.marks = 0
        self.misses += 1
        if self.misses >= self.limit:
            self._adapt()

    def _adapt(self) -> None:
        """After a generation's worth of misses: grow, shrink or stay."""
        if self.ghost_hits * _GROW_SHARE >= self.misses and self.limit < self.max_entries:
            self._resize(min(self.limit * 2, self.max_entries))
        elif (
            self.hits + self.ghost_hits
        ) * _SHRINK_SHARE < self.misses and self.limit > self.min_entries:
            self._resize(max(self.limit // 2, self.min_entries))
            self.old = {}
        self.hits = self.misses = self.ghost_hits = 0
