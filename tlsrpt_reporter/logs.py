"""Logging to stderr in one line per event, readable both on a terminal and in the journal; and
the progress line long commands show on a terminal.

Under systemd (``JOURNAL_STREAM`` set) each line starts with a ``<N>`` syslog priority prefix,
which journald turns into the entry's priority; on a terminal the line carries a UTC timestamp
and the level instead.
"""

from __future__ import annotations

import logging
import os
import sys
import time

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _Formatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        # One event, one line: a newline smuggled in through data must not forge a log line.
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{message}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        return f"{stamp} {record.name}[{os.getpid()}] {record.levelname}: {message}"


def setup(program: str, level: str = "info") -> logging.Logger:
    """Send the project's logs to stderr at ``level`` and return the program's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(journal="JOURNAL_STREAM" in os.environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosqlite logs every statement at debug level: far too much for a daemon's debug log.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root.level))
    return logging.getLogger(program)


class RepeatLimiter:
    """Lets the first event of a kind through, then one summary per ``interval`` seconds.

    Used for rejected datagrams: a local process can send millions of bad ones, and one log
    line each would flood the journal and slow the collector.
    """

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, kind: str, now: float, events: int = 1) -> int | None:
        """None to stay quiet; else how many events of ``kind`` were suppressed before this.

        ``events`` counts identical events reported at once (all but one are suppressed).
        """
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + events
            return None
        if events > 1:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + events - 1
        self._last[kind] = now
        return self._suppressed.pop(kind, 0)


class Progress:
    """A one-line progress counter on a terminal; silent when output is not a terminal."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.enabled = sys.stderr.isatty() and total > 20

    def step(self, done: int) -> None:
        """Show ``done`` of ``total``."""
        if self.enabled and (done == self.total or done % 50 == 0):
            sys.stderr.write(f"\r{self.label}: {done}/{self.total}")
            if done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
