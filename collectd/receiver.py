"""The receive process: drains the datagram socket and hands raw datagrams to the daemon.

It runs as its own process so that nothing the daemon does (decoding, SQLite, the GIL held by a
busy thread) can delay a ``recv``: libtlsrpt sends with MSG_DONTWAIT, so a full receive queue
(``net.unix.max_dgram_qlen``, 10 to 512 datagrams) silently drops sessions at the MTA. This
process only receives, stamps the receive time, frames and writes to a pipe; when the daemon
reads slowly it buffers up to a byte cap, then counts what it had to drop.

Frames on the pipe (little-endian):
    header ``<BIId``: kind, payload length, count, receive time (Unix seconds)
    kind 0 (batch): ``count`` datagrams, each ``<I`` length + bytes; a length with the top bit
        set means the datagram was larger than the cap (no bytes follow; the receive buffer is
        one byte over the cap, so the true size is not known);
        every datagram of a batch was received on the same UTC day as ``time``.
    kind 1 (dropped): ``count`` datagrams were dropped for lack of buffer at ``time``; no payload.
    kind 2 (ready): the receive loop is running; sent once at start.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable

HEADER = struct.Struct("<BIId")
LENGTH = struct.Struct("<I")
KIND_BATCH = 0
KIND_DROPPED = 1
KIND_READY = 2
OVERSIZE_FLAG = 0x8000_0000
_MAX_BATCH = 512
_MAX_BATCHES_PER_DRAIN = 16
_PR_SET_PDEATHSIG = 1


class Receiver:
    """The receive loop; ``clock`` is injectable so tests can cross UTC midnight."""

    def __init__(
        self,
        sock: socket.socket,
        out_fd: int,
        max_size: int,
        max_backlog: int,
        *,
        clock: Callable[[], float] = time.time,
        shutdown_on_stop: bool = False,
    ) -> None:
        self.sock = sock
        self.out_fd = out_fd
        self.max_size = max_size
        self.max_backlog = max_backlog
        self.clock = clock
        self.backlog: deque[memoryview] = deque()
        self.backlog_bytes = 0
        self.dropped = 0
        self.stopping = False
        self.shutdown_on_stop = shutdown_on_stop

    def _emit(self, frame: bytes) -> None:
        self.backlog.append(memoryview(frame))
        self.backlog_bytes += len(frame)

    def drain(self) -> bool:
        """Receive what is queued now, in batches that never cross a UTC day.

        Returns True after a bounded number of batches (more may be waiting), so the caller
        gets to write them out; False once the socket queue is empty.
        """
        recv = self.sock.recv
        bufsize = self.max_size + 1
        pack = LENGTH.pack
        for _ in range(_MAX_BATCHES_PER_DRAIN):
            parts: list[bytes] = []
            count = 0
            first = 0.0
            day = -1
            while count < _MAX_BATCH:
                try:
                    data = recv(bufsize)
                except (BlockingIOError, InterruptedError):
                    break
                now = self.clock()
                if count == 0:
                    first, day = now, int(now // 86400)
                elif int(now // 86400) != day:
                    # Midnight passed: this datagram opens the next day's batch.
                    self._close_batch(parts, count, first)
                    parts, count, first, day = [], 0, now, int(now // 86400)
                if self.backlog_bytes > self.max_backlog:
                    self.dropped += 1
                    continue
                size = len(data)
                if size > self.max_size:
                    parts.append(pack(OVERSIZE_FLAG))
                else:
                    parts.append(pack(size))
                    parts.append(data)
                count += 1
            if count:
                self._close_batch(parts, count, first)
            if count < _MAX_BATCH:
                return False
        return True

    def _close_batch(self, parts: list[bytes], count: int, first: float) -> None:
        if not count:
            return
        payload = b"".join(parts)
        self._emit(HEADER.pack(KIND_BATCH, len(payload), count, first) + payload)

    def flush(self, block: bool = False) -> None:
        """Write buffered frames to the pipe; raises BrokenPipeError when the daemon is gone."""
        if self.dropped and self.backlog_bytes <= self.max_backlog:
            self._emit(HEADER.pack(KIND_DROPPED, 0, self.dropped, self.clock()))
            self.dropped = 0
        while self.backlog:
            chunk = self.backlog[0]
            try:
                written = os.write(self.out_fd, chunk)
            except BlockingIOError:
                if not block:
                    return
                select.select([], [self.out_fd], [])
                continue
            self.backlog_bytes -= written
            if written == len(chunk):
                self.backlog.popleft()
            else:
                self.backlog[0] = chunk[written:]

    def run(self, wakeup_fd: int) -> None:
        """Loop until ``stopping`` is set (by a signal), then drain and flush everything."""
        self.sock.setblocking(False)
        os.set_blocking(self.out_fd, False)
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(wakeup_fd, select.POLLIN)
        out_events = 0
        poller.register(self.out_fd, out_events)  # POLLERR tells us the daemon went away
        self._emit(HEADER.pack(KIND_READY, 0, 0, self.clock()))
        while not self.stopping:
            self.drain()
            self.flush()
            wanted = select.POLLOUT if self.backlog else 0
            if wanted != out_events:
                poller.modify(self.out_fd, wanted)
                out_events = wanted
            for fd, events in poller.poll(1000):
                if fd == self.out_fd and events & (select.POLLERR | select.POLLHUP):
                    raise BrokenPipeError("the collector daemon closed its end of the pipe")
                if fd == wakeup_fd:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wakeup_fd, 512)
        # Stopping: take what the kernel still queues, hand it over, then close the pipe.
        if self.shutdown_on_stop:
            # From here on senders get EPIPE instead of queueing datagrams nobody will read.
            # Not for a socket systemd owns: it keeps queueing for the next start.
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RD)
        while self.drain():
            self.flush(block=True)
        self.flush(block=True)


def _die_with_parent() -> None:
    # If the daemon is SIGKILLed, do not linger holding the socket.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Entry point, started by the daemon:
    ``python -m tlsrpt_collectd.receiver SOCK_FD PIPE_FD MAX_SIZE MAX_BACKLOG SHUTDOWN_ON_STOP``.
    """
    args = sys.argv[1:] if argv is None else argv
    sock_fd, out_fd, max_size, max_backlog, shutdown = (int(a) for a in args)
    _die_with_parent()
    sock = socket.socket(fileno=sock_fd)
    receiver = Receiver(sock, out_fd, max_size, max_backlog, shutdown_on_stop=bool(shutdown))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)

    def stop(signum: int, frame: object) -> None:
        receiver.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if os.getppid() == 1:  # the daemon died before we set the death signal
        return 1
    try:
        receiver.run(wake_r)
    except BrokenPipeError:
        return 1
    finally:
        os.close(out_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
