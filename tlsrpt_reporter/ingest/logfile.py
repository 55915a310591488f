"""``tlsrpt-reporter ingest-log``: read an MTA's log, fold its TLS outcomes into the store.

Files are read once, in the order given (``.gz`` rotated logs too; ``-`` is standard input,
flushed at least once a second so ``journalctl -f | ... -`` keeps the store current). With
``follow`` one file is tailed across rotation and truncation; its position and the adapter's
open connections are written in the same transaction as the counts they produced, so a
restart neither counts a line twice nor skips one.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tlsrpt_reporter.errors import TlsRptError
from tlsrpt_reporter.ingest import lines as reading
from tlsrpt_reporter.ingest.exim_log import EximAdapter
from tlsrpt_reporter.ingest.log_session import LogSession
from tlsrpt_reporter.ingest.log_time import LineClock, YearGuess, zone
from tlsrpt_reporter.ingest.postfix_log import PostfixAdapter
from tlsrpt_reporter.ingest.replay import Folder
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import ingest_position as positions

log = logging.getLogger("tlsrpt_reporter.ingest.logfile")

FORMATS = ("postfix", "exim")
_BATCH_LINES = 50_000
_FLUSH_SECONDS = 1.0
_REPORT_SECONDS = 600.0


class Adapter(Protocol):
    """What a log adapter offers the driver."""

    counts: Counter[str]

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
    """What an ingest run read and stored."""

    lines: int = 0
    sessions: int = 0
    days: tuple[str, ...] = ()
    counts: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line for the operator; the line kinds, most frequent first."""
        kinds = ", ".join(f"{k} {n}" for k, n in self.counts.most_common())
        return (
            f"{self.lines} lines read, {self.sessions} sessions stored; "
            f"days: {', '.join(self.days) or 'none'}; lines by kind: {kinds or 'none'}"
        )


class _Run:
    """One ingest run: the adapter, the clock and the folder share one state."""

    def __init__(self, conn: sqlite3.Connection, fmt: str, tz_name: str | None) -> None:
        self.conn = conn
        self.fmt = fmt
        self.adapter = make_adapter(fmt)
        self.clock = LineClock(zone(tz_name))
        self.folder = Folder(conn)
        self.lines = 0
        self.pending_lines = 0
        self.last_flush = time.monotonic()

    def line(self, raw: bytes) -> None:
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
        session = self.adapter.feed(*parsed)
        if session is not None:
            self.folder.add(session.when, session.datagram())

    def due(self) -> bool:
        return self.pending_lines >= _BATCH_LINES or (
            self.pending_lines > 0 and time.monotonic() - self.last_flush >= _FLUSH_SECONDS
        )

    def flush(self, position: tuple[str, int, int, int] | None = None) -> None:
        extra: tuple[store.Statement, ...] = ()
        if position is not None:
            path, device, inode, offset = position
            state = {"adapter": self.adapter.snapshot(), "years": self.clock.years.snapshot()}
            saved = positions.IngestPosition(device, inode, offset, state)
            extra = (positions.save_statement(path, self.fmt, saved, time.time()),)
        self.folder.flush(extra)
        self.pending_lines = 0
        self.last_flush = time.monotonic()

    def result(self) -> IngestResult:
        return IngestResult(
            self.lines,
            self.folder.sessions,
            tuple(sorted(self.folder.days)),
            Counter(self.adapter.counts),
        )


def ingest_files(
    paths: list[str], fmt: str, db: str, tz_name: str | None, stop: threading.Event | None = None
) -> IngestResult:
    """Read each file once, in order, into the collector database ``db``."""
    stop = stop or threading.Event()
    conn = store.connect(db)
    run = _Run(conn, fmt, tz_name)
    try:
        for path in paths:
            if path == "-":
                stream = reading.lines_of(reading.stdin_chunks(stop))
            else:
                stream = reading.file_lines(path)
            for raw in stream:
                if raw is not None:
                    run.line(raw)
                if run.due():
                    run.flush()
                if stop.is_set():
                    break
            if stop.is_set():
                break
        run.flush()
    finally:
        conn.close()
    return run.result()


# ---- following one file across rotation -------------------------------------------------


class _Tail:
    """An open log file, read in whole lines, with the offset just past the last one."""

    def __init__(self, path: str, offset: int) -> None:
        self.path = path
        self.fh = Path(path).open("rb")  # noqa: SIM115 - held open while following
        st = os.fstat(self.fh.fileno())
        self.device, self.inode = st.st_dev, st.st_ino
        self.restart(offset)

    def restart(self, offset: int) -> None:
        """Read on from ``offset`` (0 after a copytruncate rotation)."""
        self.fh.seek(offset)
        self.offset = offset
        self.splitter = reading.Lines()

    def lines(self) -> list[bytes]:
        """The complete lines written since the last call (at most about a MiB of them).

        Empty only at the end of the file: a chunk that completes no line (the middle of an
        over-long line being skipped) is not the end, and the callers take an empty answer
        for "all read" (to look for rotation, or to stop reading a rotated file).
        """
        while chunk := self.fh.read(reading.READ_CHUNK):
            held = len(self.splitter.pending)
            complete = self.splitter.feed(chunk)
            self.offset += held + len(chunk) - len(self.splitter.pending)
            if complete:
                return complete
        return []

    def truncated(self) -> bool:
        """The file is now shorter than what was read (copytruncate rotation)."""
        return os.fstat(self.fh.fileno()).st_size < self.offset + len(self.splitter.pending)

    def replaced(self) -> bool:
        """The path now names another file (rename-and-create rotation)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # between rename and create: wait for the new file
        return (st.st_dev, st.st_ino) != (self.device, self.inode)

    def rest(self) -> list[bytes]:
        """Everything left in the file, a final unterminated line included."""
        out: list[bytes] = []
        while more := self.lines():
            out += more
        last = self.splitter.end()
        self.offset += sum(len(line) for line in last)
        return out + last

    def close(self) -> None:
        self.fh.close()


def _find_rotated(path: str, device: int, inode: int) -> str | None:
    """The rotated copy of ``path`` that is the file we were reading (same inode), if any."""
    folder, name = os.path.split(os.path.abspath(path))
    try:
        candidates = [n for n in os.listdir(folder) if n.startswith(name) and n != name]
    except OSError:
        return None
    for candidate in sorted(candidates):
        full = os.path.join(folder, candidate)
        try:
            st = os.stat(full)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (device, inode):
            return full
    return None


def follow(
    path: str,
    fmt: str,
    db: str,
    tz_name: str | None,
    *,
    stop: threading.Event,
    from_end: bool = False,
) -> IngestResult:
    """Tail ``path`` until ``stop`` is set, resuming at the saved position.

    A file that was rotated while we were stopped is finished from its rotated copy first
    (found by inode next to it); when the copy is gone, the lines in between are lost and a
    warning says so.
    """
    key = os.path.abspath(path)
    conn = store.connect(db)
    run = _Run(conn, fmt, tz_name)
    tail: _Tail | None = None
    try:
        saved = positions.load(conn, key)
        tail = _open_for_follow(path, saved, run, stop, from_end)
        if tail is not None:
            log.info("following %s (%s) from byte %d", path, fmt, tail.offset)
        reported = time.monotonic()
        while tail is not None and not stop.is_set():
            if time.monotonic() - reported >= _REPORT_SECONDS:
                # A long-running follower says what it has been reading (journal, or stderr).
                log.info("%s: %s", path, run.result().summary())
                reported = time.monotonic()
            lines = tail.lines()
            for raw in lines:
                run.line(raw)
            if not lines:
                if tail.truncated():
                    log.warning("%s was truncated: reading it again from the start", path)
                    tail.restart(0)
                elif tail.replaced():
                    for raw in tail.rest():
                        run.line(raw)
                    run.flush((key, tail.device, tail.inode, tail.offset))
                    tail.close()
                    log.info("%s was rotated: following the new file", path)
                    tail = _Tail(path, 0)
                    run.flush((key, tail.device, tail.inode, 0))
                else:
                    stop.wait(reading.POLL_SECONDS)
            if run.due() or (not lines and run.pending_lines):
                run.flush((key, tail.device, tail.inode, tail.offset))
        if tail is not None:
            run.flush((key, tail.device, tail.inode, tail.offset))
    finally:
        if tail is not None:
            tail.close()
        conn.close()
    return run.result()


def _open_for_follow(
    path: str,
    saved: positions.IngestPosition | None,
    run: _Run,
    stop: threading.Event,
    from_end: bool,
) -> _Tail | None:
    """Open ``path`` where the last run stopped (waiting for it to appear if need be)."""
    key = os.path.abspath(path)
    warned = False
    while True:
        try:
            st = os.stat(path)
            break
        except FileNotFoundError:
            if not warned:
                log.warning("%s does not exist yet: waiting for it", path)
                warned = True
            if stop.wait(reading.POLL_SECONDS):
                return None
        except OSError as exc:
            raise TlsRptError(f"cannot read log file {path}: {exc.strerror}") from None
    if saved is not None:
        run.adapter.restore(saved.state.get("adapter", {}))
        run.clock.years = YearGuess.restore(saved.state.get("years", {}))
        if (st.st_dev, st.st_ino) == (saved.device, saved.inode):
            if st.st_size >= saved.offset:
                return _open(path, saved.offset)
            log.warning("%s is shorter than where we stopped: reading it from the start", path)
            return _open(path, 0)
        rotated = _find_rotated(path, saved.device, saved.inode)
        if rotated is not None:
            log.info("%s was rotated while stopped: finishing %s first", path, rotated)
            old = _open(rotated, saved.offset)
            for raw in old.rest():
                run.line(raw)
            old.close()
        else:
            log.warning(
                "%s was rotated while stopped and the old file is gone: lines written to it "
                "after offset %d were not read",
                path,
                saved.offset,
            )
        tail = _open(path, 0)
        run.flush((key, tail.device, tail.inode, 0))
        return tail
    return _open(path, st.st_size if from_end else 0)


def _open(path: str, offset: int) -> _Tail:
    try:
        return _Tail(path, offset)
    except OSError as exc:
        raise TlsRptError(f"cannot read log file {path}: {exc.strerror}") from None
