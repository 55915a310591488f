"""Reading a log as lines, bounded: files (``.gz`` too), standard input, chunks of a followed
file. No input, with or without newlines, can make the reader hold more than one line start
of at most :data:`MAX_LINE` bytes and one read.
"""

from __future__ import annotations

import gzip
import os
import select
import sys
import threading
import zlib
from collections.abc import Iterator

from tlsrpt_reporter.errors import InputError, TlsRptError

# A line longer than this is cut (and counted): no log line of interest comes close.
MAX_LINE = 64 * 1024
READ_CHUNK = 1 << 20
# How long standard input may stay quiet before the reader says so (the caller then flushes).
POLL_SECONDS = 0.25


class Lines:
    """Cuts a byte stream into lines, holding at most one line start in memory.

    A line longer than :data:`MAX_LINE` is passed on as far as it has arrived (at most
    MAX_LINE and one read) and the rest of it, up to its newline, is skipped unread: the
    caller cuts and counts it. So no input, newline or not, can make the reader grow.
    """

    def __init__(self) -> None:
        self.pending = b""  # the start of a line whose newline has not come yet
        self._skipping = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes."""
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        if self._skipping:
            if not lines:
                self.pending = b""
                return []
            lines = lines[1:]  # the end of the over-long line already passed on
            self._skipping = False
        if len(self.pending) > MAX_LINE:
            lines.append(self.pending)
            self.pending = b""
            self._skipping = True
        return lines

    def end(self) -> list[bytes]:
        """A final line without a newline, if any."""
        rest, self.pending = self.pending, b""
        return [rest] if rest else []


def lines_of(chunks: Iterator[bytes | None]) -> Iterator[bytes | None]:
    """The lines of a stream of chunks; a None chunk (a quiet poll) is passed through."""
    lines = Lines()
    for chunk in chunks:
        if chunk is None:
            yield None
        else:
            yield from lines.feed(chunk)
    yield from lines.end()


def file_lines(path: str) -> Iterator[bytes | None]:
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:
            yield from lines_of(iter(lambda: fh.read(READ_CHUNK), b""))
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:  # BadGzipFile is an OSError
        raise InputError(f"cannot read log file {path}: not a valid gzip file ({exc})") from None
    except OSError as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise TlsRptError(f"cannot read log file {path}: {why}") from None


def stdin_chunks(stop: threading.Event) -> Iterator[bytes | None]:
    """What standard input delivers; None whenever a poll interval passes without data, so
    the caller can flush while a ``journalctl -f`` pipe is quiet."""
    fd = sys.stdin.fileno()
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
        if not ready:
            yield None
            continue
        chunk = os.read(fd, READ_CHUNK)
        if not chunk:
            return
        yield chunk
