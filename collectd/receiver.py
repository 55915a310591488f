"""The receive process: drains the datagram socket and hands datagrams to the daemon.

It runs as its own process so that nothing the daemon does (decoding, SQLite, the GIL held by a
busy thread) can delay a ``recv``: libtlsrpt sends with MSG_DONTWAIT, so a full receive queue
(``net.unix.max_dgram_qlen``, 10 to 512 datagrams) silently drops sessions at the MTA. This
process only receives, stamps the UTC day, counts identical datagrams and writes to a pipe.
MTA traffic repeats itself (Postfix's success datagrams for a domain are byte-identical), so
while the daemon is busy the pending counts grow far slower than the traffic. What it holds is
bounded in bytes (collectd.max_backlog_bytes, datagram payloads plus a per-entry cost): at the
cap it stops reading the socket until the daemon takes some, so the kernel's queue holds what
arrives meanwhile and, once that is full, the MTA's sends fail (libtlsrpt counts those).
Nothing the kernel accepted is dropped here. The pipe's frames are described in :mod:`.frames`.

With allowed senders configured the socket has SO_PASSCRED and each datagram is read with
``recvmsg``, which tells the sending process's uid and gid (SCM_CREDENTIALS); without, plain
``recv``, and nothing on the hot path looks at senders.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass

from tlsrpt_collectd import system
from tlsrpt_collectd.frames import (
    DENIED_ENTRY,
    ENTRY,
    FRAME_BYTES,
    HEADER,
    KIND_BATCH,
    KIND_DENIED,
    KIND_READY,
    OVERSIZE_FLAG,
    UNKNOWN_ID,
)

# struct ucred of SCM_CREDENTIALS (pid, uid, gid), and (uid_t)-1 for "not known".
UCRED = struct.Struct("=iII")
# Room for the credentials only: file descriptors a sender attaches (SCM_RIGHTS) find no room,
# and the kernel closes them instead of installing them here.
_CRED_SPACE = socket.CMSG_SPACE(UCRED.size)
# Distinct (uid, gid) pairs held per day between hand-overs; past it they count as unknown.
# Only a privileged sender can claim ids at will, but it must not grow memory without bound.
_MAX_DENIED_PAIRS = 1024
# Datagrams taken per drain() before the caller gets to write; entries per frame.
_MAX_PER_DRAIN = 4096
_MAX_ENTRIES_PER_FRAME = 4096
_ENTRY_OVERHEAD = 64  # rough bytes a held entry costs beyond its datagram (dict slot, count)
# Counts are handed over at most this often (or when this much is held): the longer a window,
# the more identical datagrams fold into one entry; the daemon only writes once a second.
_PACK_EVERY = 0.02
_PACK_BYTES = 1 << 20


@dataclass(frozen=True)
class Senders:
    """Who may send: a datagram passes when its sender's uid is in ``uids`` or its gid is in
    ``gids`` (the process's primary gid; the kernel does not pass supplementary groups)."""

    uids: frozenset[int]
    gids: frozenset[int]

    def to_args(self) -> list[str]:
        """The two command-line arguments of :func:`main` (comma-separated ids)."""
        return [_join(self.uids), _join(self.gids)]

    @classmethod
    def from_args(cls, uids: str, gids: str) -> Senders:
        """The inverse of :meth:`to_args`."""
        return cls(_split(uids), _split(gids))


def _join(ids: Collection[int]) -> str:
    return ",".join(str(i) for i in sorted(ids))


def _split(text: str) -> frozenset[int]:
    return frozenset(int(i) for i in text.split(",") if i)


class Receiver:
    """The receive loop; ``clock`` is injectable so tests can cross UTC midnight.

    With ``senders``, only their datagrams are handed over; the socket must have SO_PASSCRED
    set (the daemon sets it), else no datagram carries credentials and none passes.
    """

    def __init__(
        self,
        sock: socket.socket,
        out_fd: int,
        max_size: int,
        max_backlog: int,
        *,
        clock: Callable[[], float] = time.time,
        shutdown_on_stop: bool = False,
        senders: Senders | None = None,
    ) -> None:
        self.sock = sock
        self.out_fd = out_fd
        self.max_size = max_size
        self.max_backlog = max_backlog
        self.clock = clock
        self.shutdown_on_stop = shutdown_on_stop
        self.senders = senders
        # UTC day number -> {(uid, gid): times} of datagrams denied, and -> [first, last]
        self.denied: dict[int, dict[tuple[int, int], int]] = {}
        self.denied_span: dict[int, list[float]] = {}
        self.stopping = False
        # UTC day number -> {datagram: times}, and -> [first, last] receive time
        self.pending: dict[int, dict[bytes, int]] = {}
        self.span: dict[int, list[float]] = {}
        self.oversize: dict[int, int] = {}
        self.pending_bytes = 0
        self.out: deque[memoryview] = deque()
        self.out_bytes = 0
        self.packed_at = 0.0

    def _emit(self, frame: bytes | bytearray) -> None:
        self.out.append(memoryview(frame))
        self.out_bytes += len(frame)

    def full(self) -> bool:
        """Whether the bytes held reached ``max_backlog``: read nothing until some are written."""
        return self.pending_bytes + self.out_bytes >= self.max_backlog

    def drain(self) -> bool:
        """Receive and count what is queued now.

        Returns True after a bounded number of datagrams (more may be waiting), so the caller
        gets to write; False once the socket queue is empty or :meth:`full`.
        """
        if self.full():
            return False
        if self.senders is not None:
            return self._drain_checked(self.senders)
        recv = self.sock.recv
        bufsize = self.max_size + 1
        clock = self.clock
        pending = self.pending
        for _ in range(_MAX_PER_DRAIN):
            try:
                data = recv(bufsize)
            except (BlockingIOError, InterruptedError):
                return False
            now = clock()
            day = int(now // 86400)
            counts = pending.get(day)
            if counts is None:
                counts = pending[day] = {}
                self.span[day] = [now, now]
            else:
                self.span[day][1] = now
            if len(data) > self.max_size:
                self.oversize[day] = self.oversize.get(day, 0) + 1
                continue
            seen = counts.get(data)
            if seen is not None:
                counts[data] = seen + 1
            else:
                counts[data] = 1
                self.pending_bytes += len(data) + _ENTRY_OVERHEAD
                if self.pending_bytes + self.out_bytes >= self.max_backlog:
                    return False
        return True

    def _drain_checked(self, senders: Senders) -> bool:
        """:meth:`drain` for allowed senders only: the others' datagrams are counted by
        (uid, gid) and dropped.

        A loop of its own, the counting repeated from :meth:`drain`, so that without allowed
        senders the hot loop stays exactly what it was: plain ``recv``, no call per datagram.
        """
        recvmsg = self.sock.recvmsg
        bufsize = self.max_size + 1
        clock = self.clock
        pending = self.pending
        uids, gids = senders.uids, senders.gids
        for _ in range(_MAX_PER_DRAIN):
            try:
                data, ancdata, _flags, _addr = recvmsg(bufsize, _CRED_SPACE)
            except (BlockingIOError, InterruptedError):
                return False
            now = clock()
            day = int(now // 86400)
            uid = gid = UNKNOWN_ID  # no credentials (SO_PASSCRED off): nobody passes
            for level, ctype, cdata in ancdata:
                if (
                    level == socket.SOL_SOCKET
                    and ctype == socket.SCM_CREDENTIALS
                    and len(cdata) >= UCRED.size
                ):
                    _pid, uid, gid = UCRED.unpack_from(cdata)
            if uid not in uids and gid not in gids:
                self._deny(day, now, uid, gid)
                continue
            counts = pending.get(day)
            if counts is None:
                counts = pending[day] = {}
                self.span[day] = [now, now]
            else:
                self.span[day][1] = now
            if len(data) > self.max_size:
                self.oversize[day] = self.oversize.get(day, 0) + 1
                continue
            seen = counts.get(data)
            if seen is not None:
                counts[data] = seen + 1
            else:
                counts[data] = 1
                self.pending_bytes += len(data) + _ENTRY_OVERHEAD
                if self.pending_bytes + self.out_bytes >= self.max_backlog:
                    return False
        return True

    def _deny(self, day: int, now: float, uid: int, gid: int) -> None:
        pairs = self.denied.get(day)
        if pairs is None:
            pairs = self.denied[day] = {}
            self.denied_span[day] = [now, now]
        else:
            self.denied_span[day][1] = now
        key = (uid, gid)
        if key not in pairs and len(pairs) >= _MAX_DENIED_PAIRS:
            key = (UNKNOWN_ID, UNKNOWN_ID)
        pairs[key] = pairs.get(key, 0) + 1

    def pack(self) -> None:
        """Turn the pending counts into frames (one day per frame, bounded entries), the
        denied senders' counts included."""
        for day in sorted(self.denied):
            first, last = self.denied_span[day]
            # At most _MAX_DENIED_PAIRS + 1 entries: one frame holds them.
            payload = b"".join(
                DENIED_ENTRY.pack(uid, gid, times) for (uid, gid), times in self.denied[day].items()
            )
            count = len(self.denied[day])
            self._emit(HEADER.pack(KIND_DENIED, len(payload), count, first, last) + payload)
        self.denied.clear()
        self.denied_span.clear()
        if not self.pending:
            return
        for day in sorted(self.pending):
            first, last = self.span[day]
            counts = self.pending[day]
            frame = bytearray(HEADER.size)
            entries = 0
            over = self.oversize.pop(day, 0)
            if over:
                frame += ENTRY.pack(over, OVERSIZE_FLAG)
                entries = 1
            # Each datagram is copied into its frame and let go of at once (popitem), so that
            # packing never holds what is pending twice.
            while counts:
                data, times = counts.popitem()
                if entries and (
                    len(frame) + len(data) > FRAME_BYTES or entries >= _MAX_ENTRIES_PER_FRAME
                ):
                    self._frame(frame, entries, first, last)
                    frame = bytearray(HEADER.size)
                    entries = 0
                frame += ENTRY.pack(times, len(data))
                frame += data
                entries += 1
            if entries:
                self._frame(frame, entries, first, last)
        self.pending.clear()
        self.span.clear()
        self.pending_bytes = 0

    def _frame(self, frame: bytearray, entries: int, first: float, last: float) -> None:
        HEADER.pack_into(frame, 0, KIND_BATCH, len(frame) - HEADER.size, entries, first, last)
        self._emit(frame)

    def flush(self, block: bool = False) -> None:
        """Write frames to the pipe; raises BrokenPipeError when the daemon is gone."""
        while self.out:
            chunk = self.out[0]
            try:
                written = os.write(self.out_fd, chunk)
            except BlockingIOError:
                if not block:
                    return
                select.select([], [self.out_fd], [])
                continue
            self.out_bytes -= written
            if written == len(chunk):
                self.out.popleft()
            else:
                self.out[0] = chunk[written:]

    def run(self, wakeup_fd: int) -> None:
        """Loop until ``stopping`` is set (by a signal), then drain and flush everything."""
        self.sock.setblocking(False)
        os.set_blocking(self.out_fd, False)
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(wakeup_fd, select.POLLIN)
        out_events = 0
        poller.register(self.out_fd, out_events)  # POLLERR tells us the daemon went away
        in_events = select.POLLIN
        now = self.clock()
        self._emit(HEADER.pack(KIND_READY, 0, 0, now, now))
        while not self.stopping:
            self.drain()
            now = time.monotonic()
            if not self.out and (
                now - self.packed_at >= _PACK_EVERY or self.pending_bytes >= _PACK_BYTES
            ):
                # The pipe took everything: hand over the counts. Otherwise keep counting;
                # identical datagrams cost nothing more while the daemon is busy.
                self.pack()
                self.packed_at = now
            self.flush()
            wanted = select.POLLOUT if self.out else 0
            if wanted != out_events:
                poller.modify(self.out_fd, wanted)
                out_events = wanted
            reading = 0 if self.full() else select.POLLIN
            if reading != in_events:
                poller.modify(self.sock.fileno(), reading)
                in_events = reading
            held = self.pending or self.denied
            timeout = 1000 if not held else int(_PACK_EVERY * 1000) + 1
            for fd, events in poller.poll(timeout):
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
        while True:
            more = self.drain()
            if self.full():
                self.pack()
                self.flush(block=True)
            elif not more:
                break
        self.pack()
        self.flush(block=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point, started by the daemon: ``python -m tlsrpt_collectd.receiver SOCK_FD PIPE_FD
    MAX_SIZE MAX_BACKLOG SHUTDOWN_ON_STOP [ALLOWED_UIDS ALLOWED_GIDS]`` (comma-separated ids;
    without them every sender passes).
    """
    args = sys.argv[1:] if argv is None else argv
    sock_fd, out_fd, max_size, max_backlog, shutdown = (int(a) for a in args[:5])
    senders = Senders.from_args(*args[5:7]) if len(args) > 5 else None
    system.die_with_parent()  # a SIGKILLed daemon must not leave us holding the socket
    sock = socket.socket(fileno=sock_fd)
    receiver = Receiver(
        sock, out_fd, max_size, max_backlog, shutdown_on_stop=bool(shutdown), senders=senders
    )
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
