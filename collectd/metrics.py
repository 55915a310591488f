"""The collector's counters since start, and the ``metrics_file`` they are written to.

The daemon counts into :class:`Counters` (plain integer additions on its hot path); after a
flush it renders them with :func:`render` and hands the text to :func:`write_atomically` in
a worker thread, so a slow or hung disk never delays decoding or the next database write.
The file is for node-exporter's textfile collector: Prometheus text format, replaced with
``os.replace`` so a reader sees the previous or the new content, never a part of one.
Counters start at zero with the daemon; Prometheus' ``rate()`` handles the reset.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from tlsrpt_reporter.exposition import Family, Sample, gauge, histogram_samples, render
from tlsrpt_reporter.wire.decode import WIRE_FORMS

PREFIX = "tlsrpt_collectd_"
# Flush durations (seconds): a normal flush takes milliseconds, one of 16,000 new keys 0.2 s,
# and anything near flush_interval (1 s by default) means the writer is falling behind.
FLUSH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Where the daemon drops datagrams (always written, zeros included). Drops at the MTA because
# the socket's queue was full never reach the collector; libtlsrpt counts those.
DROP_REASONS = ("backlog-full", "memory-full")


@dataclass
class Counters:
    """What the daemon counted since it started (``started`` is a Unix time)."""

    started: float
    received: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    # Accepted datagrams by wire form ("dpv-1", "no-dpv"): which libtlsrpt feeds us.
    forms: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WIRE_FORMS, 0))
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    flushes: int = 0
    flush_errors: int = 0
    last_flush_seconds: float = 0.0
    last_flush_at: float = 0.0
    flush_seconds_sum: float = 0.0
    flush_buckets: list[int] = field(default_factory=lambda: [0] * (len(FLUSH_BUCKETS) + 1))
    # Datagrams received up to the start of the last successful flush: all of them are in
    # the database (counted, at least, when rejected or dropped).
    written: int = 0

    def flushed(self, seconds: float, now: float, received_before: int) -> None:
        """A flush that wrote to the database took ``seconds``."""
        self.flushes += 1
        self.last_flush_seconds = seconds
        self.last_flush_at = now
        self.flush_seconds_sum += seconds
        # Bucket i holds durations up to FLUSH_BUCKETS[i] (Prometheus' "le" is inclusive).
        self.flush_buckets[bisect.bisect_left(FLUSH_BUCKETS, seconds)] += 1
        self.written = received_before

    def summary(self) -> str:
        """The totals for a log line."""
        return (
            f"received {self.received}, accepted {self.accepted}, "
            f"rejected {sum(self.rejected.values())}, dropped {sum(self.dropped.values())}"
        )


def families(c: Counters, pending_keys: int) -> list[Family]:
    """The counters as metric families; ``pending_keys``: aggregate keys not yet written."""
    return [
        Family(PREFIX + "received_total", "counter",
               "Datagrams received (accepted, rejected or dropped)", (Sample(c.received),)),
        Family(PREFIX + "accepted_total", "counter",
               "Datagrams decoded and counted into the aggregate", (Sample(c.accepted),)),
        Family(PREFIX + "accepted_by_form_total", "counter",
               "Accepted datagrams by wire form: dpv-1 (libtlsrpt 0.5.0 and later) or no-dpv "
               "(libtlsrpt 0.5.0rc1, as in Debian 13)",
               tuple(Sample(n, (("form", f),)) for f, n in sorted(c.forms.items()))),
        Family(PREFIX + "rejected_total", "counter", "Datagrams rejected, by reason",
               tuple(Sample(n, (("reason", r),)) for r, n in sorted(c.rejected.items()))),
        Family(PREFIX + "dropped_total", "counter",
               "Datagrams dropped for lack of room: backlog-full (the receive process's "
               "collectd.max_backlog_bytes), memory-full (collectd.max_pending_keys)",
               tuple(Sample(n, (("reason", r),)) for r, n in sorted(c.dropped.items()))),
        Family(PREFIX + "flushes_total", "counter", "Writes of the aggregate to the database",
               (Sample(c.flushes),)),
        Family(PREFIX + "flush_errors_total", "counter",
               "Writes the database refused (the counts stay in memory and are tried again)",
               (Sample(c.flush_errors),)),
        Family(PREFIX + "flush_duration_seconds", "histogram",
               "Time one successful write to the database took",
               histogram_samples(FLUSH_BUCKETS, c.flush_buckets, c.flush_seconds_sum)),
        gauge(PREFIX + "last_flush_duration_seconds",
              "Time the last successful write took", c.last_flush_seconds),
        gauge(PREFIX + "last_flush_timestamp_seconds",
              "Unix time of the last successful write (0: none yet)", c.last_flush_at),
        gauge(PREFIX + "datagrams_waiting",
              "Datagrams received but not yet in the database", c.received - c.written),
        gauge(PREFIX + "pending_keys",
              "Aggregate keys held in memory, not yet written", pending_keys),
        gauge(PREFIX + "start_time_seconds", "Unix time the daemon started", c.started),
    ]  # fmt: skip


def text(c: Counters, pending_keys: int) -> str:
    """The metrics file's content."""
    return render(families(c, pending_keys))


def write_atomically(path: str, content: str) -> None:
    """Replace ``path`` with ``content``: a temporary file in the same directory, renamed.

    The temporary name does not end in ``.prom``, so the textfile collector never reads it.
    Raises OSError (the caller logs it); a leftover temporary file is removed.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(content)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
