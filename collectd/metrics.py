"""The collector's counters since start, and the ``metrics_file`` they are written to.

The daemon counts into :class:`Counters` (plain integer additions on its hot path: no
``prometheus_client`` metric objects, no locks per datagram). :class:`CountersCollector` turns
a :meth:`Counters.snapshot` into metric families only when the file is rendered (:func:`text`,
``prometheus_client.generate_latest``), and :func:`write_atomically` writes it; both in a
worker thread, so a slow or hung disk never delays decoding or the next database write. The
file is for node-exporter's textfile collector: Prometheus text format, replaced with
``os.replace`` so a reader sees the previous or the new content, never a part of one. Counters
start at zero with the daemon; Prometheus' ``rate()`` handles the reset.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from tlsrpt_reporter import exposition, safefile
from tlsrpt_reporter.exposition import by_label, gauge, histogram
from tlsrpt_reporter.wire.decode import REJECT_REASONS, WIRE_FORMS

PREFIX = "tlsrpt_collectd_"
# Flush durations (seconds): a normal flush takes milliseconds, one of 16,000 new keys 0.2 s,
# and anything near flush_interval (1 s by default) means the writer is falling behind.
FLUSH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Where the daemon drops datagrams (always written, zeros included). Drops at the MTA because
# the socket's queue was full never reach the collector; libtlsrpt counts those. (At
# collectd.max_backlog_bytes the receive process stops reading rather than drop.)
DROP_REASONS = ("memory-full",)


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
    # Failure details left out by collectd.max_failure_details; the aggregate's estimated
    # bytes after the last fold (collectd.max_held_bytes).
    details_capped: int = 0
    held_bytes: int = 0

    def flushed(self, seconds: float, now: float, received_before: int) -> None:
        """A flush that wrote to the database took ``seconds``."""
        self.flushes += 1
        self.last_flush_seconds = seconds
        self.last_flush_at = now
        self.flush_seconds_sum += seconds
        # Bucket i holds durations up to FLUSH_BUCKETS[i] (Prometheus' "le" is inclusive).
        self.flush_buckets[bisect.bisect_left(FLUSH_BUCKETS, seconds)] += 1
        self.written = received_before

    def snapshot(self) -> Counters:
        """A copy to render in another thread while the daemon counts on: the dicts and the
        list are copied too, so the rendering sees the counts of one moment."""
        return dataclasses.replace(
            self,
            rejected=dict(self.rejected),
            forms=dict(self.forms),
            dropped=dict(self.dropped),
            flush_buckets=list(self.flush_buckets),
        )

    def summary(self) -> str:
        """The totals for a log line."""
        return (
            f"received {self.received}, accepted {self.accepted}, "
            f"rejected {sum(self.rejected.values())}, dropped {sum(self.dropped.values())}"
        )


def families(c: Counters, pending_keys: int) -> list[Metric]:
    """The counters as metric families; ``pending_keys``: aggregate keys not yet written."""
    return [
        _counter("received_total", "Datagrams received (accepted, rejected or dropped)",
                 c.received),
        _counter("accepted_total", "Datagrams decoded and counted into the aggregate",
                 c.accepted),
        _by("accepted_by_form_total",
            "Accepted datagrams by wire form: dpv-1 (libtlsrpt 0.5.0 and later) or no-dpv "
            "(libtlsrpt 0.5.0rc1, as in Debian 13)", "form", c.forms),
        # Every known reason from the start: increase() misses a series' first increment.
        _by("rejected_total", "Datagrams rejected, by reason", "reason",
            {**dict.fromkeys(REJECT_REASONS, 0), **c.rejected}),
        _by("dropped_total",
            "Datagrams dropped for lack of room: memory-full (collectd.max_pending_keys or "
            "max_held_bytes, while the database cannot be written)", "reason", c.dropped),
        _counter("flushes_total", "Writes of the aggregate to the database", c.flushes),
        _counter("flush_errors_total",
                 "Writes the database refused (the counts stay in memory and are tried again)",
                 c.flush_errors),
        histogram(PREFIX + "flush_duration_seconds",
                  "Time one successful write to the database took",
                  FLUSH_BUCKETS, c.flush_buckets, c.flush_seconds_sum),
        gauge(PREFIX + "last_flush_duration_seconds",
              "Time the last successful write took", c.last_flush_seconds),
        gauge(PREFIX + "last_flush_timestamp_seconds",
              "Unix time of the last successful write (0: none yet)", c.last_flush_at),
        gauge(PREFIX + "datagrams_waiting",
              "Datagrams received but not yet in the database", c.received - c.written),
        gauge(PREFIX + "pending_keys",
              "Aggregate keys held in memory, not yet written", pending_keys),
        gauge(PREFIX + "held_bytes",
              "Estimated bytes of the counts held in memory (collectd.max_held_bytes)",
              c.held_bytes),
        _counter("failure_details_capped_total",
                 "Failure details left out because their policy already held "
                 "collectd.max_failure_details distinct ones (their sessions still count)",
                 c.details_capped),
        gauge(PREFIX + "start_time_seconds", "Unix time the daemon started", c.started),
    ]  # fmt: skip


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, help_text, value=value)


def _by(name: str, help_text: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + name, help_text, labels=[label])
    return by_label(family, sorted(values.items()))


class CountersCollector(Collector):
    """The daemon's :class:`Counters` as a ``prometheus_client`` collector: the families are
    built from the plain counters at each collection, never updated per datagram."""

    def __init__(self, counters: Counters, pending_keys: Callable[[], int]) -> None:
        self.counters = counters
        self.pending_keys = pending_keys

    def collect(self) -> Iterator[Metric]:
        """The families of the counts at this moment."""
        yield from families(self.counters, self.pending_keys())


def text(c: Counters, pending_keys: int) -> str:
    """The metrics file's content, rendered from a private registry (not the library's global
    one, which would add this process's own metrics)."""
    return exposition.text(exposition.registry(CountersCollector(c, lambda: pending_keys)))


def write_atomically(path: str, content: str) -> None:
    """Replace ``path`` with ``content`` through a temporary file in the same directory.

    The temporary name is random (a planted link at a guessable name could otherwise redirect
    the write) and does not end in ``.prom``, so the textfile collector never reads it. Raises
    OSError (the caller logs it); a leftover temporary file is removed.
    """
    safefile.replace(path, content.encode(), 0o644)
