"""``tlsrpt-reporter ingest-log``: read an MTA's log, fold its TLS outcomes into the store.

Files given are read once each, in order (``.gz`` rotated logs too; ``-`` is standard input,
flushed at least once a second so ``journalctl -f | ... -`` keeps the store current), each from
where it was read before: :mod:`tlsrpt_reporter.ingest.read_once`. With ``follow`` (this
module) one file is tailed across rotation and truncation; its position and the adapter's open
connections are written in the same transaction as the counts they produced, so a restart
neither counts a line twice nor skips one. A followed file without a saved position of its own
goes on from where ``ingest-log FILE`` read it, when it did.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from tlsrpt_reporter.errors import InputError, TlsRptError
from tlsrpt_reporter.ingest import identity
from tlsrpt_reporter.ingest import lines as reading
from tlsrpt_reporter.ingest.log_time import YearGuess
from tlsrpt_reporter.ingest.read_once import ingest_files
from tlsrpt_reporter.ingest.run import FORMATS, IngestResult, Run, Where, make_adapter
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import ingest_position as positions

log = logging.getLogger("tlsrpt_reporter.ingest.logfile")

__all__ = ["FORMATS", "IngestResult", "follow", "ingest_files", "make_adapter"]


_REPORT_SECONDS = 600.0


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

    def where(self, key: str) -> Where:
        """The position to save under ``key``: up to :attr:`offset`, with the file's identity."""
        fd = self.fh.fileno()
        start = max(0, self.offset - identity.CHECK_BYTES)
        head = os.pread(fd, identity.HEAD_BYTES, 0)
        before = os.pread(fd, self.offset - start, start)
        return Where(key, self.device, self.inode, self.offset, identity.identity(head, before))

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
    run = Run(conn, fmt, tz_name)
    tail: _Tail | None = None
    try:
        saved = _saved(conn, key, fmt, path)
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
                    run.flush(tail.where(key))
                    tail.close()
                    log.info("%s was rotated: following the new file", path)
                    tail = _Tail(path, 0)
                    run.flush(tail.where(key))
                else:
                    problem = run.wrong_format(evidence_needed=True)
                    if problem is not None:
                        raise problem
                    stop.wait(reading.POLL_SECONDS)
            if run.due() or (not lines and run.pending_lines):
                run.flush(tail.where(key))
        if tail is not None:
            run.flush(tail.where(key))
    finally:
        if tail is not None:
            tail.close()
        conn.close()
    return run.result()


def _open_for_follow(
    path: str,
    saved: positions.IngestPosition | None,
    run: Run,
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
        run.flush(tail.where(key))
        return tail
    if from_end:
        return _open(path, st.st_size)
    tail = _open(path, 0)
    # Read before by ``ingest-log FILE`` (known by content): go on from there.
    head = os.pread(tail.fh.fileno(), identity.HEAD_BYTES, 0)
    row = identity.find(positions.load_all(run.conn), run.fmt, head)
    if row is not None:
        offset = row.position.offset
        start = max(0, offset - identity.CHECK_BYTES)
        decision = identity.resume(path, row, os.pread(tail.fh.fileno(), offset - start, start))
        if decision.known and offset <= st.st_size:
            run.adapter.restore(row.position.state.get("adapter", {}))
            run.clock.years = YearGuess.restore(row.position.state.get("years", {}))
            tail.restart(offset)
            log.info("%s was read before by ingest-log up to byte %d", path, offset)
    return tail


def _saved(
    conn: sqlite3.Connection, key: str, fmt: str, path: str
) -> positions.IngestPosition | None:
    """The position saved for following ``key``; InputError when it was read as another
    format (its saved state is that adapter's)."""
    for row in positions.load_all(conn):
        if row.key == key:
            if row.fmt != fmt:
                raise InputError(
                    f"ingest-log: {path} was read as {row.fmt} before, not {fmt}: use "
                    f"--format {row.fmt}"
                )
            return row.position
    return None


def _open(path: str, offset: int) -> _Tail:
    try:
        return _Tail(path, offset)
    except OSError as exc:
        raise TlsRptError(f"cannot read log file {path}: {exc.strerror}") from None
