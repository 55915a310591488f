"""The receive process's loop on a real socket: counting, oversize, the backlog cap, frames."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from support.collector import send_all
from support.datagrams import ok

from tlsrpt_collectd.daemon import Collector as Daemon
from tlsrpt_collectd.frames import (
    DENIED_ENTRY,
    ENTRY,
    FRAME_BYTES,
    HEADER,
    KIND_BATCH,
    KIND_DENIED,
    OVERSIZE_FLAG,
)
from tlsrpt_collectd.intake import SENDER_NOT_ALLOWED
from tlsrpt_collectd.receiver import UCRED, Receiver, Senders
from tlsrpt_reporter.config.schema import CollectdConfig


def frames(data: bytes) -> list[tuple[int, int, list[tuple[int, int, bytes]]]]:
    """Parse the pipe's bytes: (kind, count, [(times, length field, datagram)]); a denied
    frame's entries are (times, uid, gid as 4 bytes)."""
    out = []
    pos = 0
    while pos < len(data):
        kind, length, count, _first, _last = HEADER.unpack_from(data, pos)
        pos += HEADER.size
        end = pos + length
        entries = []
        if kind == KIND_DENIED:
            for _ in range(count):
                uid, gid, times = DENIED_ENTRY.unpack_from(data, pos)
                pos += DENIED_ENTRY.size
                entries.append((times, uid, gid.to_bytes(4, "little")))
        if kind == KIND_BATCH:
            for _ in range(count):
                times, size = ENTRY.unpack_from(data, pos)
                pos += ENTRY.size
                body = b"" if size & OVERSIZE_FLAG else data[pos : pos + size]
                pos += len(body)
                entries.append((times, size, body))
        pos = end
        out.append((kind, count, entries))
    return out


def bound_socket(tmp_path: Path, *, passcred: bool = False) -> tuple[Path, socket.socket]:
    """A non-blocking datagram socket bound at ``tmp_path/r.sock`` (with ``passcred``, datagrams
    carry their sender's credentials), and that path."""
    path = tmp_path / "r.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    if passcred:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    server.setblocking(False)
    return path, server


def handed_over(receiver: Receiver, read_fd: int, write_fd: int) -> bytes:
    """Pack what ``receiver`` holds, write it all to the pipe (``write_fd``, closed then) and
    read the pipe to its end (``read_fd``, closed then)."""
    receiver.pack()
    receiver.flush(block=True)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 1 << 20):
        chunks.append(chunk)
    os.close(read_fd)
    return b"".join(chunks)


def run_once(tmp_path: Path, grams: list[bytes], max_size: int = 4096,
             max_backlog: int = 1 << 20) -> bytes:  # fmt: skip
    path, server = bound_socket(tmp_path)
    read_fd, write_fd = os.pipe()
    receiver = Receiver(server, write_fd, max_size, max_backlog)
    for i in range(0, len(grams), 8):  # in small groups: the test host's queue may hold 10
        send_all(path, grams[i : i + 8])
        receiver.drain()
    data = handed_over(receiver, read_fd, write_fd)
    server.close()
    return data


def test_identical_datagrams_cross_the_pipe_once_with_their_count(tmp_path: Path) -> None:
    grams = [b"same"] * 100 + [b"other-1", b"other-2", b"same"]
    (frame,) = frames(run_once(tmp_path, grams))
    kind, count, entries = frame
    assert kind == KIND_BATCH and count == 3
    assert {body: times for times, _, body in entries} == {
        b"same": 101, b"other-1": 1, b"other-2": 1,
    }  # fmt: skip


def test_oversize_datagrams_are_counted_without_their_bytes(tmp_path: Path) -> None:
    (frame,) = frames(run_once(tmp_path, [b"x" * 200, b"ok", b"y" * 300], max_size=100))
    entries = frame[2]
    oversize = [(times, size) for times, size, _ in entries if size & OVERSIZE_FLAG]
    assert oversize == [(2, OVERSIZE_FLAG)]
    assert [(t, b) for t, s, b in entries if not s & OVERSIZE_FLAG] == [(1, b"ok")]


def test_at_the_backlog_cap_the_receiver_stops_reading_and_drops_nothing(
    tmp_path: Path,
) -> None:
    path, server = bound_socket(tmp_path)
    read_fd, write_fd = os.pipe()
    receiver = Receiver(server, write_fd, 4096, max_backlog=1000)
    grams = [b"d%03d" % i + b"." * 100 for i in range(8)]  # the test host's queue may hold 10
    send_all(path, grams)
    assert not receiver.drain()
    assert receiver.full(), "8 distinct datagrams of 104 bytes cannot fit under 1000 bytes"
    held = sum(len(counts) for counts in receiver.pending.values())
    assert 0 < held < len(grams), "the rest stays in the kernel's queue"
    assert not receiver.drain(), "a full receiver reads nothing more"
    receiver.pack()
    receiver.flush(block=True)  # the daemon took what was held
    assert not receiver.full()
    receiver.drain()
    parsed = frames(handed_over(receiver, read_fd, write_fd))
    server.close()
    assert {kind for kind, _, _ in parsed} == {KIND_BATCH}
    got = sorted(body for _, _, entries in parsed for times, _, body in entries if times == 1)
    assert got == grams, "every datagram handed over once, none dropped"


def test_a_frame_holds_at_most_frame_bytes_of_datagrams(tmp_path: Path) -> None:
    path, server = bound_socket(tmp_path)
    read_fd, write_fd = os.pipe()
    big = 60_000
    receiver = Receiver(server, write_fd, 100_000, max_backlog=64 << 20)
    for sent in range(0, 40, 2):  # 2.4 MB: more than two frames' worth
        # Two at a time: queued datagrams count against the sender's 208 KiB send buffer.
        send_all(path, [b"%03d" % (sent + i) + b"x" * big for i in range(2)])
        receiver.drain()
    chunks: list[bytes] = []
    # 2.4 MB do not fit in a pipe: read it while the receiver writes, as the daemon does.
    reader = threading.Thread(
        target=lambda: chunks.extend(iter(lambda: os.read(read_fd, 1 << 20), b""))
    )
    reader.start()
    receiver.pack()
    receiver.flush(block=True)
    os.close(write_fd)
    reader.join(60)
    os.close(read_fd)
    server.close()
    parsed = frames(b"".join(chunks))
    assert len(parsed) >= 3
    for _, _, entries in parsed:
        assert sum(len(body) for _, _, body in entries) <= FRAME_BYTES
    assert sum(len(entries) for _, _, entries in parsed) == 40


def test_senders_not_allowed_are_counted_by_uid_and_gid_and_never_handed_over(
    tmp_path: Path,
) -> None:
    """With allowed senders the socket passes credentials; a datagram passes on its uid or
    its gid, the others cross the pipe as (uid, gid, times) only, and the daemon counts them
    as rejected. As root this process may claim any uid and gid (SCM_CREDENTIALS)."""
    path, server = bound_socket(tmp_path, passcred=True)
    read_fd, write_fd = os.pipe()
    senders = Senders(uids=frozenset({0}), gids=frozenset({4242}))
    receiver = Receiver(server, write_fd, 4096, 1 << 20, senders=senders)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def send_as(data: bytes, uid: int, gid: int) -> None:
        creds = UCRED.pack(os.getpid(), uid, gid)
        client.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)], 0, str(path))

    send_all(path, [ok("root.example")])  # the kernel adds this process's own credentials
    send_as(ok("member.example"), 65534, 4242)
    for _ in range(3):
        send_as(b"stranger", 65534, 65534)
    send_as(b"another", 1000, 1000)
    receiver.drain()
    data = handed_over(receiver, read_fd, write_fd)
    client.close()
    server.close()

    parsed = frames(data)
    (batch,) = [entries for kind, _, entries in parsed if kind == KIND_BATCH]
    assert sorted(body for _, _, body in batch) == [ok("member.example"), ok("root.example")]
    (denied,) = [entries for kind, _, entries in parsed if kind == KIND_DENIED]
    assert sorted((uid, int.from_bytes(gid, "little"), t) for t, uid, gid in denied) == [
        (1000, 1000, 1), (65534, 65534, 3),
    ]  # fmt: skip
    assert b"stranger" not in data, "a denied datagram's bytes never reach the daemon"

    daemon = Daemon(CollectdConfig(max_datagram_size=4096))
    daemon.intake.buf += data
    daemon.intake.consume()
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert daemon.counters.rejected == {SENDER_NOT_ALLOWED: 4}
    assert daemon.counters.received == 6
    daemon.intake.fold()
    assert daemon.counters.accepted == 2
    assert daemon.intake.agg.counters[(day, f"rejected:{SENDER_NOT_ALLOWED}")] == 4
    assert daemon.intake.agg.counters[(day, "rejected")] == 4


def test_without_credentials_nobody_passes(tmp_path: Path) -> None:
    """Allowed senders on a socket without SO_PASSCRED: fail closed, as sender unknown."""
    path, server = bound_socket(tmp_path)
    read_fd, write_fd = os.pipe()
    receiver = Receiver(
        server, write_fd, 4096, 1 << 20, senders=Senders(frozenset({0}), frozenset({0}))
    )
    send_all(path, [b"a", b"b"])
    receiver.drain()
    data = handed_over(receiver, read_fd, write_fd)
    server.close()
    unknown = (0xFFFF_FFFF).to_bytes(4, "little")
    assert frames(data) == [(KIND_DENIED, 1, [(2, 0xFFFF_FFFF, unknown)])]


def test_senders_cross_the_command_line_intact() -> None:
    senders = Senders(uids=frozenset({0, 101}), gids=frozenset())
    assert senders.to_args() == ["0,101", ""]
    assert Senders.from_args(*senders.to_args()) == senders


def test_the_bundled_sample_is_what_its_seeded_generator_writes() -> None:
    from tlsrpt_reporter.demo import samplegen
    from tlsrpt_reporter.demo.run import sample_path

    regenerated = b"".join(
        line + b"\n"
        for line in samplegen.sessions(
            samplegen.SAMPLE_SEED, samplegen.SAMPLE_DOMAINS, samplegen.SAMPLE_SESSIONS
        )
    )
    assert sample_path().read_bytes() == regenerated
