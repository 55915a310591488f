"""Replay a JSON-lines file of datagrams (one datagram object per line) into a collector."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tlsrpt_reporter.errors import TlsRptError
from tlsrpt_reporter.sender import MTA_LIKE_SNDBUF, DatagramSender

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
    """Send each line as one datagram, byte for byte, like libtlsrpt would.

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
            while not sender.send(line) and wait:
                sender.dropped -= 1
                time.sleep(_WAIT_STEP)
        return ReplayResult(sent=sender.sent, dropped=sender.dropped, skipped=skipped)
