"""Replay a session log: JSON lines, one datagram object per line, optionally with a ``ts``
(RFC 3339) member saying when the session happened. Into a collector's socket (live datagrams,
``ts`` removed) or straight into a collector database (each session on the day of its ``ts``).
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tlsrpt_reporter import store
from tlsrpt_reporter.aggregate import Aggregate
from tlsrpt_reporter.errors import DatagramRejected, TlsRptError
from tlsrpt_reporter.sender import MTA_LIKE_SNDBUF, DatagramSender
from tlsrpt_reporter.wire import CachingDecoder

_WAIT_STEP = 0.0005


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did."""

    sent: int
    dropped: int
    skipped: int


def read_lines(path: str) -> Iterator[bytes]:
    """The file's lines as bytes (``-`` is standard input), line ends stripped."""
    if path == "-":
        yield from (line.rstrip(b"\r\n") for line in sys.stdin.buffer)
        return
    try:
        with Path(path).open("rb") as fh:
            yield from (line.rstrip(b"\r\n") for line in fh)
    except OSError as exc:
        raise TlsRptError(f"cannot read replay file {path}: {exc.strerror}") from None


def to_socket(path: str, socket_path: str, rate: float | None, wait: bool) -> ReplayResult:
    """Send each line as one datagram, byte for byte (less any ``ts``), like libtlsrpt would.

    ``rate`` paces the sends (datagrams per second); ``wait`` retries a send that found the
    queue full instead of counting it dropped.
    """
    skipped = 0
    start = time.perf_counter()
    with DatagramSender(socket_path, sndbuf=MTA_LIKE_SNDBUF) as sender:
        for index, line in enumerate(read_lines(path)):
            if not line.strip():
                skipped += 1
                continue
            if rate is not None:
                due = start + index / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            try:
                _, payload = split_ts(line)
            except TlsRptError:
                payload = line  # the collector will count it, like any odd datagram
            while not sender.send(payload) and wait:
                sender.dropped -= 1
                time.sleep(_WAIT_STEP)
        return ReplayResult(sent=sender.sent, dropped=sender.dropped, skipped=skipped)


# A session log line is a datagram object plus an optional "ts" (RFC 3339) member. Cutting the
# member out of the raw bytes keeps the rest byte-identical, so identical sessions still share
# one decode (the decoder caches by bytes).
_TS_MEMBER = re.compile(rb'\s*"ts"\s*:\s*"([^"\\]{1,64})"\s*,?')
_FLUSH_EVERY = 50_000


@dataclass(frozen=True)
class IntoDbResult:
    """What a replay into a database did."""

    sessions: int
    rejected: int
    skipped: int
    days: tuple[str, ...]


def split_ts(line: bytes) -> tuple[float | None, bytes]:
    """The line's ``ts`` as Unix time (None when absent) and the datagram without it.

    Raises TlsRptError when ``ts`` is present but not an RFC 3339 time with a zone.
    """
    match = _TS_MEMBER.search(line)
    if match is None:
        return None, line
    text = match[1].decode("ascii", "replace")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise TlsRptError(f"ts {text!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise TlsRptError(f"ts {text!r} has no time zone (RFC 3339 needs Z or an offset)")
    rest = line[: match.start()] + line[match.end() :]
    # The member may have been the last one: drop the comma it leaves before the brace.
    rest = re.sub(rb",\s*}$", b"}", rest.rstrip())
    return when.timestamp(), rest


def into_db(path: str, db: str) -> IntoDbResult:
    """Fold every session of a session log into the collector database ``db``.

    Each session counts on the UTC day of its ``ts`` (or today, without one), through the same
    decoding and aggregation as the collector; a line that is not a valid session is counted
    as rejected, like a bad datagram.
    """
    conn = store.connect(db)
    agg = Aggregate(max_keys=10**9)  # written every _FLUSH_EVERY lines, never held long
    decoder = CachingDecoder()
    sessions = rejected = skipped = 0
    days: set[str] = set()
    progress = sys.stderr.isatty()
    now = time.time()
    try:
        for number, line in enumerate(read_lines(path), 1):
            if not line.strip():
                skipped += 1
                continue
            try:
                when, raw = split_ts(line)
            except TlsRptError:
                when, raw = None, b""
            when = now if when is None else when
            day = time.strftime("%Y-%m-%d", time.gmtime(when))
            days.add(day)
            try:
                agg.add(day, when, decoder.decode(raw))
                sessions += 1
            except DatagramRejected as exc:
                agg.reject(day, exc.reason)
                rejected += 1
            if number % _FLUSH_EVERY == 0:
                store.write(conn, store.build_batch(agg.take()))
                if progress:
                    sys.stderr.write(f"\rreplayed {number:,} lines")
                    sys.stderr.flush()
        store.write(conn, store.build_batch(agg.take()))
    finally:
        conn.close()
        if progress:
            sys.stderr.write("\n")
    return IntoDbResult(sessions, rejected, skipped, tuple(sorted(days)))
