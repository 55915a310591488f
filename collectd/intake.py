"""The collector's intake: frames from the receive process in, decoded datagrams folded into the
in-memory aggregate, every datagram counted (accepted, rejected by reason, dropped).

No I/O but logging: the daemon (:mod:`.daemon`) reads the pipe into :attr:`Intake.buf`, calls
:meth:`Intake.consume`, and writes :attr:`Intake.agg` to the database. This is the hot path:
identical datagrams are counted as raw bytes and decoded once, and folded into the aggregate
once per flush. What it holds is bounded in bytes: the raw datagrams counted before a fold
(:data:`_MAX_FRONT_BYTES`), and the aggregate's estimate (``collectd.max_held_bytes``), which
asks for an early write at half of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tlsrpt_collectd import metrics
from tlsrpt_collectd.frames import (
    DENIED_ENTRY,
    ENTRY,
    HEADER,
    KIND_BATCH,
    KIND_DENIED,
    KIND_READY,
    OVERSIZE_FLAG,
    UNKNOWN_ID,
)
from tlsrpt_reporter import logs, utc
from tlsrpt_reporter.config.schema import CollectdConfig
from tlsrpt_reporter.errors import DatagramRejected
from tlsrpt_reporter.model import Datagram
from tlsrpt_reporter.wire.aggregate import C_DETAILS_CAPPED, C_DROPPED_MEMORY, Aggregate
from tlsrpt_reporter.wire.decode import CachingDecoder

log = logging.getLogger("tlsrpt-collectd")

# The per-day rejection counter of datagrams from a sender that collectd.allowed_users and
# allowed_groups do not let in (the receive process drops them; see receiver.Senders).
SENDER_NOT_ALLOWED = "sender-not-allowed"
# Distinct datagrams counted between folds; past it they are folded at once: raw datagrams
# cost far more memory than their folded counts (100,000 new domains in a burst).
_MAX_FRONT = 5_000
# Bytes of distinct raw datagrams counted between folds: large ones (failure details by the
# hundred, up to max_datagram_size) are folded soon, so that the aggregate's byte bound
# applies to them (2,000 distinct 200 KB datagrams once took the collector to 822 MiB).
_MAX_FRONT_BYTES = 4 * 1024 * 1024
# Keys held in the aggregate that make the writer flush before the interval ends.
_EARLY_FLUSH_KEYS = 10_000


class Intake:
    """Decodes and counts what the receive process hands over.

    ``on_ready`` runs when the receive process says it receives; ``on_many_keys`` when the
    aggregate holds enough keys that writing them early saves memory.
    """

    def __init__(
        self,
        cfg: CollectdConfig,
        counters: metrics.Counters,
        limiter: logs.RepeatLimiter,
        *,
        on_ready: Callable[[], None],
        on_many_keys: Callable[[], None],
    ) -> None:
        self.cfg = cfg
        self.counters = counters
        self.limiter = limiter
        self.on_ready = on_ready
        self.on_many_keys = on_many_keys
        self.agg = Aggregate(
            max_keys=cfg.max_pending_keys,
            max_bytes=cfg.max_held_bytes,
            max_details=cfg.max_failure_details,
        )
        self.decoder = CachingDecoder(max_size=cfg.max_datagram_size)
        self.buf = bytearray()
        self._day_cache: tuple[int, str] = (-1, "")
        self._oversize = DatagramRejected(
            "oversize", f"larger than collectd.max_datagram_size = {cfg.max_datagram_size} bytes"
        )
        # day -> {raw datagram: [decoded, times seen]}, and day -> [first, last] receive time
        self._front: dict[str, dict[bytes, list[Any]]] = {}
        self._front_span: dict[str, list[float]] = {}
        self._front_bytes = 0
        # A fold adds about this much to the aggregate's estimate, which asks for a write at
        # half of max_held_bytes: an eighth keeps the bound well clear.
        self._max_front_bytes = min(_MAX_FRONT_BYTES, cfg.max_held_bytes // 8)

    def consume(self) -> None:
        """Take every whole frame from :attr:`buf`; a partial frame stays for the next read."""
        buf = self.buf
        pos = 0
        end_of_data = len(buf)
        hsize = HEADER.size
        with memoryview(buf) as view:
            while end_of_data - pos >= hsize:
                kind, length, count, when, last = HEADER.unpack_from(view, pos)
                end = pos + hsize + length
                if end > end_of_data:
                    break
                day = self._day(when)
                if kind == KIND_BATCH:
                    self._batch(view, pos + hsize, count, day, (when, last))
                elif kind == KIND_DENIED:
                    self._denied(view, pos + hsize, count, day, last)
                elif kind == KIND_READY:
                    self.on_ready()
                pos = end
        del buf[:pos]

    def _day(self, when: float) -> str:
        number = int(when // 86400)
        if self._day_cache[0] != number:
            self._day_cache = (number, utc.day(when))
        return self._day_cache[1]

    def _batch(
        self, view: memoryview, pos: int, count: int, day: str, span: tuple[float, float]
    ) -> None:
        # Hot path: each entry is a distinct datagram with how often it arrived; identical
        # ones are only counted here and folded into the aggregate once per flush.
        first, last = span
        front = self._front.get(day)
        if front is None:
            front = self._front[day] = {}
            self._front_span[day] = [first, last]
        else:
            held = self._front_span[day]
            held[0] = min(held[0], first)
            held[1] = max(held[1], last)
        decode = self.decoder.decode
        unpack = ENTRY.unpack_from
        received = 0
        for _ in range(count):
            times, size = unpack(view, pos)
            pos += 8
            received += times
            if size & OVERSIZE_FLAG:
                self.reject(day, last, self._oversize, times)
                continue
            data = view[pos : pos + size].tobytes()
            pos += size
            entry = front.get(data)
            if entry is not None:
                entry[1] += times
                continue
            try:
                front[data] = [decode(data), times]
            except DatagramRejected as exc:
                self.reject(day, last, exc, times)
            else:
                self._front_bytes += size
        self.counters.received += received
        if len(front) > _MAX_FRONT or self._front_bytes > self._max_front_bytes:
            self.fold()

    def _denied(self, view: memoryview, pos: int, count: int, day: str, when: float) -> None:
        # Datagrams the receive process did not hand over: they were received, and rejected.
        for _ in range(count):
            uid, gid, times = DENIED_ENTRY.unpack_from(view, pos)
            pos += DENIED_ENTRY.size
            self.counters.received += times
            if uid == UNKNOWN_ID and gid == UNKNOWN_ID:
                detail = "sender unknown (no credentials, or more distinct senders than tracked)"
            else:
                detail = (
                    f"uid {uid}, gid {gid} (neither is in collectd.allowed_users or "
                    "collectd.allowed_groups)"
                )
            exc = DatagramRejected(SENDER_NOT_ALLOWED, detail)
            self.reject(day, when, exc, times)

    def fold(self) -> None:
        """Move the counted datagrams into the aggregate, where the memory bound applies."""
        agg = self.agg
        capped_before = agg.details_capped
        for day, front in self._front.items():
            first, last = self._front_span[day]
            entries = [(entry[0], entry[1]) for entry in front.values()]
            dropped = agg.add_many(day, last, entries, first_seen=first)
            self._count_accepted(entries, dropped)
            if dropped:
                self.counters.dropped["memory-full"] += sum(times for _d, times in dropped)
                if self.limiter.allow(C_DROPPED_MEMORY, last) is not None:
                    log.error(
                        "memory bound reached: %d keys, ~%d MiB held (collectd.max_pending_keys, "
                        "max_held_bytes) because the database cannot be written; sessions for "
                        "new domains/policies are dropped",
                        len(agg),
                        agg.held_bytes >> 20,
                    )
        self._front = {}
        self._front_span = {}
        self._front_bytes = 0
        capped = agg.details_capped - capped_before
        if capped:
            self.counters.details_capped += capped
            suppressed = self.limiter.allow(C_DETAILS_CAPPED, time.time(), capped)
            if suppressed is not None:
                log.warning(
                    "%d failure details left out since the last report: their policies already "
                    "held %d distinct ones until the next write (collectd.max_failure_details); "
                    "their sessions count",
                    suppressed + 1,
                    self.cfg.max_failure_details,
                )
        self.counters.held_bytes = agg.held_bytes
        if len(agg) >= _EARLY_FLUSH_KEYS or agg.held_bytes >= self.cfg.max_held_bytes // 2:
            # Many new keys or bytes: write them now rather than hold two large aggregates
            # (the one being written and the one filling) until the interval ends. Half the
            # bound, so that the aggregate filling meanwhile does not reach it.
            self.on_many_keys()

    def _count_accepted(
        self, entries: list[tuple[Datagram, int]], dropped: list[tuple[Datagram, int]]
    ) -> None:
        forms = self.counters.forms
        accepted = 0
        for datagram, times in entries:
            accepted += times
            if datagram.wire_form:
                form = datagram.wire_form.removeprefix("wire-form:")
                forms[form] = forms.get(form, 0) + times
        for datagram, times in dropped:  # rare: only while the database cannot be written
            accepted -= times
            if datagram.wire_form:
                forms[datagram.wire_form.removeprefix("wire-form:")] -= times
        self.counters.accepted += accepted

    def reject(self, day: str, when: float, exc: DatagramRejected, times: int = 1) -> None:
        """Count ``times`` rejected datagrams by reason; log it, at most once a minute a kind."""
        self.agg.reject(day, exc.reason, times)
        rejected = self.counters.rejected
        rejected[exc.reason] = rejected.get(exc.reason, 0) + times
        suppressed = self.limiter.allow("rejected:" + exc.reason, when, times)
        if suppressed is not None:
            more = f" ({suppressed} more of this kind since the last report)" if suppressed else ""
            log.warning("rejected datagram: %s%s", exc, more)
