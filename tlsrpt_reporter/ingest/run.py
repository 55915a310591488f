"""One ``ingest-log`` run: the log adapter, the line clock and the folder that stores sessions,
and whether the log is of the format it was said to be.

This module owns turning raw lines into stored sessions and the run's result; where the lines
come from (files, standard input, a followed file) and where reading stopped are
:mod:`tlsrpt_reporter.ingest.logfile`'s.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from tlsrpt_reporter.errors import InputError, TlsRptError
from tlsrpt_reporter.ingest import lines as reading
from tlsrpt_reporter.ingest.exim_log import EximAdapter
from tlsrpt_reporter.ingest.log_session import LogSession
from tlsrpt_reporter.ingest.log_time import LineClock, zone
from tlsrpt_reporter.ingest.postfix_log import PostfixAdapter
from tlsrpt_reporter.ingest.replay import Folder
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import ingest_position as positions

FORMATS = ("postfix", "exim")
_BATCH_LINES = 50_000
_FLUSH_SECONDS = 1.0
# While no line is the format's own, the first lines also go to the other adapters, to say
# which format the log is when it is not the one given.
_PROBE_LINES = 10_000


class Adapter(Protocol):
    """What a log adapter offers the driver."""

    counts: Counter[str]
    recognized: int  # lines that are this MTA's by their form, whatever they say

    def feed(self, when: float, rest: str) -> LogSession | None: ...
    def snapshot(self) -> dict[str, Any]: ...
    def restore(self, data: dict[str, Any]) -> None: ...


def make_adapter(fmt: str) -> Adapter:
    """The adapter for ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "postfix":
        return PostfixAdapter()
    if fmt == "exim":
        return EximAdapter()
    raise TlsRptError(f"unknown log format {fmt!r}: use one of {', '.join(FORMATS)}")


@dataclass
class IngestResult:
    """What an ingest run read and stored, and what it skipped because it had read it before."""

    lines: int = 0
    sessions: int = 0
    days: tuple[str, ...] = ()
    counts: Counter[str] = field(default_factory=Counter)
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for the operator (the line kinds, most frequent first), then the notes."""
        kinds = ", ".join(f"{k} {n}" for k, n in self.counts.most_common())
        line = (
            f"{self.lines} lines read, {self.sessions} sessions stored; "
            f"days: {', '.join(self.days) or 'none'}; lines by kind: {kinds or 'none'}"
        )
        return "\n".join([line, *(f"  {note}" for note in self.notes)])


@dataclass(frozen=True)
class Where:
    """Where reading one file stopped, to be saved with the counts up to there."""

    key: str
    device: int
    inode: int
    offset: int
    identity: dict[str, Any]  # the file's content identity (``ingest.identity``)


class Run:
    """One ingest run: the adapter, the clock and the folder share one state."""

    def __init__(self, conn: sqlite3.Connection, fmt: str, tz_name: str | None) -> None:
        """A run storing into ``conn``, reading ``fmt`` lines in zone ``tz_name``."""
        self.conn = conn
        self.fmt = fmt
        self.adapter = make_adapter(fmt)
        self.probes = {other: make_adapter(other) for other in FORMATS if other != fmt}
        self.clock = LineClock(zone(tz_name))
        self.folder = Folder(conn)
        self.lines = 0
        self.timed_lines = 0
        self.pending_lines = 0
        self.last_flush = time.monotonic()
        self.notes: list[str] = []

    def line(self, raw: bytes) -> None:
        """Count one line and fold the session it completes, if any."""
        self.lines += 1
        self.pending_lines += 1
        if len(raw) > reading.MAX_LINE:
            self.adapter.counts["line-too-long"] += 1
            raw = raw[: reading.MAX_LINE]
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        parsed = self.clock.parse(text)
        if parsed is None:
            self.adapter.counts["no-timestamp" if text.strip() else "blank"] += 1
            return
        self.timed_lines += 1
        session = self.adapter.feed(*parsed)
        if session is not None:
            self.folder.add(session.when, session.datagram())
        if not self.adapter.recognized and self.timed_lines <= _PROBE_LINES:
            for probe in self.probes.values():
                probe.feed(*parsed)

    def due(self, *, by_time: bool = True) -> bool:
        """Enough lines, or (``by_time``: for a stream, to keep the store current) enough
        time, for the next write."""
        return self.pending_lines >= _BATCH_LINES or (
            by_time
            and self.pending_lines > 0
            and time.monotonic() - self.last_flush >= _FLUSH_SECONDS
        )

    def flush(self, where: Where | None = None) -> None:
        """Write the sessions folded so far, and ``where`` reading stopped, in one transaction.

        No position is saved while no line of the run was of its format: a wrong ``--format``
        must not mark a file as read.
        """
        extra: tuple[store.Statement, ...] = ()
        if where is not None and self.adapter.recognized:
            state = {
                "adapter": self.adapter.snapshot(),
                "years": self.clock.years.snapshot(),
                **where.identity,
            }
            saved = positions.IngestPosition(where.device, where.inode, where.offset, state)
            extra = (positions.save_statement(where.key, self.fmt, saved, time.time()),)
        self.folder.flush(extra)
        self.pending_lines = 0
        self.last_flush = time.monotonic()

    def wrong_format(self, *, evidence_needed: bool) -> InputError | None:
        """The error for a log in which no line is of the format given, or None.

        With ``evidence_needed`` (a followed file, which may just be quiet so far) only when
        the lines are recognisably another MTA's.
        """
        if self.adapter.recognized or not self.timed_lines:
            return None
        other = next((fmt for fmt, probe in self.probes.items() if probe.recognized), None)
        if other is None and evidence_needed:
            return None
        looks = f"they look like {other}'s: use --format {other}" if other else "check --format"
        return InputError(
            f"ingest-log: none of the {self.timed_lines} lines read is a {self.fmt} log line; "
            f"{looks} (nothing was stored or remembered)"
        )

    def result(self) -> IngestResult:
        """What was read and stored so far."""
        return IngestResult(
            self.lines,
            self.folder.sessions,
            tuple(sorted(self.folder.days)),
            Counter(self.adapter.counts),
            tuple(self.notes),
        )
