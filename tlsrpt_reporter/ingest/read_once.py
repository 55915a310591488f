"""``ingest-log FILE...``: read log files once each, in order, each from where it was read
before.

A file is known again by its content (:mod:`tlsrpt_reporter.ingest.identity`): a rerun adds
nothing, a file that grew adds only its new lines, a rotated or compressed copy of a file read
before adds what was not read of it. Where each file stopped is saved in the same transaction
as the counts up to there. A plain file's last line without a newline is left for the next run
(the MTA may be writing it); a compressed file is read to its end. Standard input (``-``) is
read as it comes and not remembered.
"""

from __future__ import annotations

import gzip
import io
import os
import threading
import zlib

from tlsrpt_reporter.errors import InputError, TlsRptError
from tlsrpt_reporter.ingest import identity
from tlsrpt_reporter.ingest import lines as reading
from tlsrpt_reporter.ingest.log_time import YearGuess
from tlsrpt_reporter.ingest.run import IngestResult, Run, Where
from tlsrpt_reporter.logs import Progress
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import ingest_position as positions


def ingest_files(
    paths: list[str], fmt: str, db: str, tz_name: str | None, stop: threading.Event | None = None
) -> IngestResult:
    """Read each file once, in order, into the collector database ``db``.

    A file read before (known by its content, :mod:`tlsrpt_reporter.ingest.identity`) is read
    on from where that stopped: a rerun adds nothing, a file that grew adds its new lines.
    InputError when no line of the whole run was a ``fmt`` log line.
    """
    stop = stop or threading.Event()
    conn = store.connect(db)
    run = Run(conn, fmt, tz_name)
    try:
        for path in paths:
            if path == "-":
                _read_stdin(run, stop)
            else:
                _read_file(run, path, stop)
            if stop.is_set():
                break
        run.flush()
    finally:
        conn.close()
    problem = None if stop.is_set() else run.wrong_format(evidence_needed=False)
    if problem is not None:
        raise problem
    return run.result()


def _read_stdin(run: Run, stop: threading.Event) -> None:
    for raw in reading.lines_of(reading.stdin_chunks(stop)):
        if raw is not None:
            run.line(raw)
        if run.due():
            run.flush()
        if stop.is_set():
            break


def _read_file(run: Run, path: str, stop: threading.Event) -> None:
    """Read ``path`` (``.gz`` decompressed) from where it was read before, if it was; save
    where it stopped with the counts."""
    compressed = path.endswith(".gz")
    try:
        with (gzip.open if compressed else open)(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            head = fh.read(identity.HEAD_BYTES)
            start, key, before = _start(run, path, fh, head)
            file_id = (st.st_dev, st.st_ino)
            # A compressed file's size says nothing of its lines' bytes: no total, no ETA.
            size = 0 if compressed else st.st_size
            with Progress(f"reading {os.path.basename(path)}", size, unit="bytes") as progress:
                end = _read_on(run, fh, path=path, offset=start, key=key, head=head,
                               before=before, file_id=file_id, stop=stop,
                               progress=progress)  # fmt: skip
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:  # BadGzipFile is an OSError
        raise InputError(f"cannot read log file {path}: not a valid gzip file ({exc})") from None
    except OSError as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise TlsRptError(f"cannot read log file {path}: {why}") from None
    if start and end == start and len(before) == min(start, identity.CHECK_BYTES):
        run.notes.append(f"skipped {path}: read before, all {start} bytes")
    elif start and end > start:
        run.notes.append(f"resumed {path} at byte {start}: the bytes before were read before")


def _start(run: Run, path: str, fh: io.BufferedIOBase, head: bytes) -> tuple[int, str, bytes]:
    """(the offset to read ``path`` from, the key its position is saved under, the bytes just
    before the offset); restores the adapter's state saved there."""
    row = identity.find(positions.load_all(run.conn), run.fmt, head) if head else None
    if row is None:
        fh.seek(0)
        return 0, identity.content_key(head), b""
    offset = row.position.offset
    fh.seek(max(0, offset - identity.CHECK_BYTES))
    before = fh.read(offset - max(0, offset - identity.CHECK_BYTES))
    decision = identity.resume(path, row, before)
    if decision.note:
        run.notes.append(decision.note)
    if not decision.known:
        fh.seek(0)
        return 0, row.key, b""
    run.adapter.restore(row.position.state.get("adapter", {}))
    run.clock.years = YearGuess.restore(row.position.state.get("years", {}))
    fh.seek(decision.offset)
    return decision.offset, row.key, before


def _read_on(
    run: Run,
    fh: io.BufferedIOBase,
    *,
    path: str,
    offset: int,
    key: str,
    head: bytes,
    before: bytes,
    file_id: tuple[int, int],
    stop: threading.Event,
    progress: Progress,
) -> int:
    """Read ``fh`` from ``offset`` (``before``: the bytes just before it) to its end, or until
    ``stop``; the offset reached."""
    splitter = reading.Lines()
    recent = before  # the last bytes before ``offset``, for the identity's check

    def where() -> Where:
        return Where(key, *file_id, offset, identity.identity(head, recent))

    while not stop.is_set() and (chunk := fh.read(reading.READ_CHUNK)):
        data = splitter.pending + chunk
        complete = splitter.feed(chunk)
        used = len(data) - len(splitter.pending)
        offset += used
        progress.step(offset)
        recent = _last(recent + data[max(0, used - identity.CHECK_BYTES) : used])
        for raw in complete:
            run.line(raw)
        # By size only: each write saves the adapter's state with the position, and a file
        # read once needs no store kept current by the second.
        if run.due(by_time=False):
            run.flush(where())
    last = splitter.end()
    if last and not stop.is_set():
        if path.endswith(".gz"):  # a compressed log is finished: its last line is whole
            run.line(last[0])
            offset += len(last[0])
            recent = _last(recent + last[0])
        else:
            run.notes.append(f"left the last line of {path} for the next run: no newline yet")
    run.flush(where())
    return offset


def _last(data: bytes) -> bytes:
    return data[-identity.CHECK_BYTES :]
