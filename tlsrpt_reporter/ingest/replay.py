"""Replay a session log: JSON lines, one datagram object per line, optionally with a ``ts``
(RFC 3339) member saying when the session happened. Into a collector's socket (live datagrams,
``ts`` removed) or straight into a collector database (each session on the day of its ``ts``).
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tlsrpt_reporter.errors import DatagramRejected, TlsRptError
from tlsrpt_reporter.logs import Progress
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import CachingDecoder
from tlsrpt_reporter.wire.encode import MTA_LIKE_SNDBUF, DatagramSender

_WAIT_STEP = 0.0005


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did."""

    sent: int
    dropped: int
    skipped: int


def read_lines(path: str) -> Iterator[bytes]:
    """The file's lines as bytes (``-`` is standard input), line ends stripped."""
    for block in read_blocks(path):
        yield from block


def read_blocks(path: str) -> Iterator[list[bytes]]:
    """The file's lines (``-`` is standard input), a few MiB of them at a time: splitting
    large blocks costs a fraction of reading line by line."""
    try:
        if path == "-":
            yield from _split_blocks(sys.stdin.buffer)
            return
        with Path(path).open("rb") as fh:
            yield from _split_blocks(fh)
    except OSError as exc:
        raise TlsRptError(f"cannot read replay file {path}: {exc.strerror}") from None


def _split_blocks(fh: BinaryIO) -> Iterator[list[bytes]]:
    rest = b""
    while block := fh.read(4 << 20):
        *lines, rest = (rest + block).split(b"\n")
        if b"\r" in block:
            lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        yield lines
    if rest:
        yield [rest[:-1] if rest.endswith(b"\r") else rest]


def to_socket(path: str, socket_path: str, rate: float | None, wait: bool) -> ReplayResult:
    """Send each line as one datagram, byte for byte (less any ``ts``), like libtlsrpt would.

    ``rate`` paces the sends (datagrams per second); ``wait`` retries a send that found the
    queue full instead of counting it dropped.
    """
    skipped = 0
    start = time.perf_counter()
    with (
        DatagramSender(socket_path, sndbuf=MTA_LIKE_SNDBUF) as sender,
        Progress(f"replaying {Path(path).name}", _size(path), unit="bytes") as progress,
    ):
        for index, line in enumerate(read_lines(path)):
            progress.advance(len(line) + 1)
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
# Lines per write: larger batches fold more repeats (fewer decodes and upserts); memory is
# bounded by the distinct sessions of one batch.
_FLUSH_EVERY = 250_000


def _size(path: str) -> int:
    """The size of a session log for progress (0 for standard input or a pipe: no total)."""
    if path == "-":
        return 0
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0  # reading it says what is wrong


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
    at = line.rfind(b'"ts"')
    if at < 0:  # the common case of a plain datagram, without running a regex over it
        return None, line
    # The usual layout, the member appended last: its tail ("ts": "...", brace) recurs for
    # every session of the same second, so its value is looked up, not parsed.
    tail = line[at:]
    when = _TAIL_CACHE.get(tail)
    if when is None:
        last = _TS_LAST.fullmatch(tail)
        if last is not None:
            when = _ts_value(last[1])
            if len(_TAIL_CACHE) >= 4096:
                _TAIL_CACHE.clear()
            _TAIL_CACHE[tail] = when
    if when is not None:
        # libtlsrpt's layout has ', ' or ',' before the member; anything else takes the slow way
        if line[at - 2 : at] == b", ":
            return when, line[: at - 2] + b"}"
        if line[at - 1] == 0x2C:  # ","
            return when, line[: at - 1] + b"}"
        head = line[:at].rstrip()
        if head.endswith(b","):
            return when, head[:-1] + b"}"
    match = _TS_MEMBER.search(line)
    if match is None:
        return None, line
    when = _ts_value(match[1])
    rest = line[: match.start()] + line[match.end() :]
    # The member may have been the last one: drop the comma it leaves before the brace.
    rest = re.sub(rb",\s*}$", b"}", rest.rstrip())
    return when, rest


_TS_LAST = re.compile(rb'"ts"\s*:\s*"([^"\\]{1,64})"\s*}\s*')
_TAIL_CACHE: dict[bytes, float] = {}


def _ts_value(raw: bytes) -> float:
    """Unix time of an RFC 3339 ``ts`` value."""
    text = raw.decode("ascii", "replace")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise TlsRptError(f"ts {text!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise TlsRptError(f"ts {text!r} has no time zone (RFC 3339 needs Z or an offset)")
    return when.timestamp()


def into_db(path: str, db: str) -> IntoDbResult:
    """Fold every session of a session log into the collector database ``db``.

    Each session counts on the UTC day of its ``ts`` (or today, without one), through the same
    decoding and aggregation as the collector; a line that is not a valid session is counted
    as rejected, like a bad datagram.
    """
    conn = store.connect(db)
    folder = Folder(conn)
    skipped = 0
    progress = Progress(f"replaying {Path(path).name}", _size(path), unit="bytes")
    now = time.time()
    add, split = folder.add, split_ts  # the loop runs a million times: local names
    number = 0
    try:
        for block in read_blocks(path):
            # Bytes of the block's lines and their newlines: the bar's unit is the file's size.
            progress.advance(sum(map(len, block)) + len(block))
            for line in block:
                number += 1
                if not line or line.isspace():
                    skipped += 1
                    continue
                try:
                    when, raw = split(line)
                except TlsRptError:
                    when, raw = None, b""
                add(now if when is None else when, raw)
                if number % _FLUSH_EVERY == 0:
                    folder.flush()
        folder.flush()
    finally:
        conn.close()
        progress.close()
    return IntoDbResult(folder.sessions, folder.rejected, skipped, tuple(sorted(folder.days)))


class Folder:
    """Collects sessions (raw datagrams with the time they happened) and writes them to a
    collector database in batches, through the collector's decoder and aggregate.

    Identical sessions of one day are folded once per batch, as the collector does.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # A batch job: a larger cache than the daemon's keeps repeats from re-decoding.
        self.decoder = CachingDecoder(max_entries=65536)
        self.sessions = 0
        self.rejected = 0
        self.days: set[str] = set()
        self._day_of = _DayCache()
        # (day, datagram bytes) -> [times, first seen, last seen]
        self._held: dict[tuple[str, bytes], list[float]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def add(self, when: float, raw: bytes) -> None:
        """Hold one session that happened at Unix time ``when``."""
        days = self._day_of
        key = (days.day if days.start <= when < days.end else days(when), raw)
        entry = self._held.get(key)
        if entry is None:
            self._held[key] = [1, when, when]
            return
        entry[0] += 1
        if when > entry[2]:  # logs are mostly in order: one comparison in the common case
            entry[2] = when
        elif when < entry[1]:
            entry[1] = when

    def flush(self, extra: tuple[tuple[str, store.Rows], ...] = ()) -> None:
        """Write what is held in one transaction, together with ``extra`` statements (a log
        follower's position, so that counts and position can never disagree)."""
        if not self._held and not extra:
            return
        agg = Aggregate(max_keys=10**9)  # one batch, written at once
        sessions = rejected = 0
        for (day, raw), (times, first, last) in self._held.items():
            count = int(times)
            try:
                agg.add(day, last, self.decoder.decode(raw), count, first_seen=first)
                sessions += count
            except DatagramRejected as exc:
                agg.reject(day, exc.reason, count)
                rejected += count
        batch = store.build_batch(agg)
        store.write(self.conn, store.WriteBatch(statements=batch.statements + extra))
        self.sessions += sessions
        self.rejected += rejected
        self.days.update(day for day, _ in self._held)
        self._held = {}


class _DayCache:
    """UTC day of a Unix time, remembering the last day's bounds (logs are mostly in order)."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.day = ""

    def __call__(self, when: float) -> str:
        if not self.start <= when < self.end:
            self.day = time.strftime("%Y-%m-%d", time.gmtime(when))
            self.start = when - when % 86400
            self.end = self.start + 86400
        return self.day
