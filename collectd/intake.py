"""The collector's intake: frames from the receive process in, decoded datagrams folded into the
in-memory aggregate, every datagram counted (accepted, rejected by reason, dropped).

No I/O but logging: the daemon (:mod:`.daemon`) reads the pipe into :attr:`Intake.buf`, calls
:meth:`Intake.consume`, and writes :attr:`Intake.agg` to the database. This is the hot path:
identical datagrams are counted as raw bytes and decoded once, and folded into the aggregate
once per flush.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tlsrpt_collectd import metrics
from tlsrpt_collectd.receiver import (
    DENIED_ENTRY,
    ENTRY,
    HEADER,
    KIND_BATCH,
    KIND_DENIED,
    KIND_DROPPED,
    KIND_READY,
    OVERSIZE_FLAG,
    UNKNOWN_ID,
)
from tlsrpt_reporter import logs
from tlsrpt_reporter.config.schema import CollectdConfig
from tlsrpt_reporter.errors import DatagramRejected
from tlsrpt_reporter.wire.aggregate import C_DROPPED_MEMORY, Aggregate
from tlsrpt_reporter.wire.decode import CachingDecoder

log = logging.getLogger("tlsrpt-collectd")

_DROPPED_BACKLOG = "dropped:backlog-full"
# The per-day rejection counter of datagrams from a sender that collectd.allowed_users and
# allowed_groups do not let in (the receive process drops them; see receiver.Senders).
SENDER_NOT_ALLOWED = "sender-not-allowed"
# Distinct datagrams counted between folds; past it they are folded at once: raw datagrams
# cost far more memory than their folded counts (100,000 new domains in a burst).
_MAX_FRONT = 5_000
# Keys held in the aggregate that make the writer flush before the interval ends.
_EARLY_FLUSH_KEYS = 10_000


def utc_day(when: float) -> str:
    """The UTC day of a Unix time as ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(when))


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
        self.agg = Aggregate(max_keys=cfg.max_pending_keys)
        self.decoder = CachingDecoder(max_size=cfg.max_datagram_size)
        self.buf = bytearray()
        self._day_cache: tuple[int, str] = (-1, "")
        self._oversize = DatagramRejected(
            "oversize", f"larger than collectd.max_datagram_size = {cfg.max_datagram_size} bytes"
        )
        # day -> {raw datagram: [decoded, times seen]}, and day -> [first, last] receive time
        self._front: dict[str, dict[bytes, list[Any]]] = {}
        self._front_span: dict[str, list[float]] = {}

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
                elif kind == KIND_DROPPED:
                    self.agg.count(day, "received", count)
                    self.agg.count(day, _DROPPED_BACKLOG, count)
                    self.counters.received += count
                    self.counters.dropped["backlog-full"] += count
                    log.error(
                        "the receive process dropped %d datagrams: this process could not keep "
                        "up and its backlog reached collectd.max_backlog_bytes (%d)",
                        count,
                        self.cfg.max_backlog_bytes,
                    )
                pos = end
        del buf[:pos]

    def _day(self, when: float) -> str:
        number = int(when // 86400)
        if self._day_cache[0] != number:
            self._day_cache = (number, utc_day(when))
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
        self.counters.received += received
        if len(front) > _MAX_FRONT:
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
        for day, front in self._front.items():
            first, last = self._front_span[day]
            for datagram, times in front.values():
                if agg.add(day, last, datagram, times, first_seen=first):
                    self.counters.accepted += times
                    if datagram.wire_form:
                        form = datagram.wire_form.removeprefix("wire-form:")
                        self.counters.forms[form] = self.counters.forms.get(form, 0) + times
                    continue
                self.counters.dropped["memory-full"] += times
                if self.limiter.allow(C_DROPPED_MEMORY, last) is not None:
                    log.error(
                        "memory bound reached: %d keys held (collectd.max_pending_keys) because "
                        "the database cannot be written; sessions for new domains/policies are "
                        "dropped",
                        len(agg),
                    )
        self._front = {}
        self._front_span = {}
        if len(agg) >= _EARLY_FLUSH_KEYS:
            # Many new keys: write them now rather than hold two large aggregates (the one
            # being written and the one filling) in memory until the interval ends.
            self.on_many_keys()

    def reject(self, day: str, when: float, exc: DatagramRejected, times: int = 1) -> None:
        """Count ``times`` rejected datagrams by reason; log it, at most once a minute a kind."""
        self.agg.reject(day, exc.reason, times)
        rejected = self.counters.rejected
        rejected[exc.reason] = rejected.get(exc.reason, 0) + times
        suppressed = self.limiter.allow("rejected:" + exc.reason, when, times)
        if suppressed is not None:
            more = f" ({suppressed} more of this kind since the last report)" if suppressed else ""
            log.warning("rejected datagram: %s%s", exc, more)
