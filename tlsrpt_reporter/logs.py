"""Logging to stderr in one line per event, readable both on a terminal and in the journal;
the collapsing of alike warnings into one line with a count; and the progress long commands
show (a rich progress bar on a terminal, a plain line now and then elsewhere).

Under systemd (``JOURNAL_STREAM`` set) each line starts with a ``<N>`` syslog priority prefix,
which journald turns into the entry's priority; on a terminal the line carries a UTC timestamp
and the level instead.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tlsrpt_reporter.progress_bar import Bar

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


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a line is logged: a progress bar on the
    terminal stands in for it while it runs, so that log lines scroll above the bar instead of
    being drawn through it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` to the current standard error."""
        self.setStream(sys.stderr)
        super().emit(record)


def setup(program: str, level: str = "info") -> logging.Logger:
    """Send the project's logs to stderr at ``level`` and return the program's logger."""
    handler = _StderrHandler()
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


# Names shorter than this are left in when telling alike warnings apart: a "1" or an "ok"
# taken out of an error text would make different errors look the same.
_SHORTEST_NAME = 4


class _Collapse(logging.Filter):
    """Lets the first warning of each likeness through and counts the rest (see
    :func:`collapsed`)."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[tuple[str, int, str], logging.LogRecord] = {}
        self.more: collections.Counter[tuple[str, int, str]] = collections.Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a warning (or worse) like one let through before."""
        if record.levelno < logging.WARNING:
            return True
        key = likeness(record)
        if key not in self.first:
            self.first[key] = record
            return True
        self.more[key] += 1
        return False


def likeness(record: logging.LogRecord) -> tuple[str, int, str]:
    """What makes two log records alike: the logger, the level, the message's template and its
    last argument (by the project's convention the error: ``"...: %s"``), with the names the
    message is about (its other text arguments: domains, destinations, Report-IDs) taken out.
    A relay that refuses 190 reports, or a resolver that answers no domain, is one likeness."""
    args = record.args if isinstance(record.args, tuple) else ()
    if not args:
        return record.name, record.levelno, record.getMessage()
    *others, last = args
    text = str(last)
    names = (a for a in others if isinstance(a, str) and len(a) >= _SHORTEST_NAME)
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, "\0")
    return record.name, record.levelno, f"{record.msg}\0\0{text}"


@contextlib.contextmanager
def collapsed(logger: str = "tlsrpt-reporter") -> Iterator[None]:
    """Within the block, a warning or error alike (:func:`likeness`) to one already logged is
    held back; when the block ends, each such kind gets one more line: the first one's message
    with "(and N more like it)". Meant for one pass over many reports, where one fault on our
    side (a relay down, DNS unreachable) would otherwise say the same thing once per report."""
    target = logging.getLogger(logger)
    collapse = _Collapse()
    target.addFilter(collapse)
    try:
        yield
    finally:
        target.removeFilter(collapse)
        for key, count in collapse.more.items():
            first = collapse.first[key]
            line = f"{first.getMessage()} (and {count} more like it)"
            summary = logging.makeLogRecord(
                {**first.__dict__, "msg": line, "args": None, "exc_info": None, "exc_text": None}
            )
            summary.created = time.time()
            logging.getLogger(first.name).handle(summary)


# A plain progress line at most this often (seconds): a heartbeat in the journal, not a flood.
PLAIN_EVERY = 15.0
# Fewer items than this finish before a bar would be worth drawing.
_SMALLEST_BAR = 21


class Progress:
    """The progress of ``total`` items of long work (``label``: what is being done), with the
    rate and the time left.

    On a terminal, a rich progress bar on standard error (for more than 20 items); elsewhere
    (a pipe, the journal) a plain line every ``every`` seconds once the work runs that long,
    and one when it ends, so that short work stays silent. ``unit`` ``"bytes"`` counts bytes
    (shown as kB, MB) rather than items. Use it as a context manager or call :meth:`close`;
    it also ends by itself when :meth:`step` reaches ``total``.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "",
        every: float = PLAIN_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.every = every
        self.clock = clock
        self.enabled = sys.stderr.isatty() and total >= _SMALLEST_BAR
        self._started = clock()
        self._next_line = self._started + every
        self._done = 0
        self._spoke = False
        self._closed = False
        self._bar: Bar | None = None
        if self.enabled:
            # Imported here: rich costs a daemon's start-up and is only wanted on a terminal.
            from tlsrpt_reporter.progress_bar import Bar  # noqa: PLC0415

            self._bar = Bar(label, total, unit)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def step(self, done: int) -> None:
        """``done`` of ``total`` are done (or under way)."""
        self._done = done
        if self._closed:
            return
        if self._bar is not None:
            self._bar.update(done)
        elif self.clock() >= self._next_line:
            self._next_line = self.clock() + self.every
            self._spoke = True
            _say(self._plain_line())
        if done >= self.total:
            self.close()

    def advance(self, count: int = 1) -> None:
        """``count`` more are done."""
        self.step(self._done + count)

    def close(self) -> None:
        """End the bar, or say how it went when plain lines were shown; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.stop()
        elif self._spoke:
            took = max(self.clock() - self._started, 1e-9)
            _say(f"{self.label}: {self._amount(self._done)} done in {_seconds(took)}, "
                 f"{self._amount(self._done / took)}/s")  # fmt: skip

    def _plain_line(self) -> str:
        elapsed = max(self.clock() - self._started, 1e-9)
        rate = self._done / elapsed
        line = f"{self.label}: {self._amount(self._done)} of {self._amount(self.total)}"
        if self.total:
            line += f" ({100 * self._done // self.total} %)"
        line += f", {self._amount(rate)}/s"
        if rate > 0 and self.total > self._done:
            line += f", about {_seconds((self.total - self._done) / rate)} left"
        return line

    def _amount(self, value: float) -> str:
        if self.unit == "bytes":
            return _bytes(value)
        return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _say(line: str) -> None:
    """A plain progress line: logged when logging was set up (the journal gets its priority),
    straight to standard error otherwise (``build`` logs nothing else)."""
    if logging.getLogger().handlers:
        logging.getLogger("tlsrpt-reporter").info("%s", line)
    else:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _seconds(value: float) -> str:
    whole = int(value + 0.5)
    if whole < 120:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


def _bytes(value: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
