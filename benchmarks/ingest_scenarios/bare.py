"""(d) bare: a minimal ``recv()``-and-count loop in its own process, blasted like ``blast``:
what a Python receiver can take on this machine at all."""

from __future__ import annotations

import queue
import socket
import tempfile
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from harness.model import (
    CTX,
    READY_TIMEOUT,
    RECV_SIZE,
    SEND_TIMEOUT,
    SETTLE_LIMIT,
    BenchError,
    Data,
    Row,
    Sends,
    Settings,
)
from harness.output import n, report
from harness.senders import SenderGroup


def _bare_worker(path: str, ready: Event, results: Queue[Any]) -> None:
    """Receive and count until an empty datagram arrives; report (count, time of it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        ready.set()
        recv = sock.recv
        count = 0
        while recv(RECV_SIZE):
            count += 1
        results.put((count, time.monotonic()))


def run_bare(root: Path, items: list[bytes], senders: int) -> tuple[Sends, int, float]:
    """Blast a bare receive loop; (sends, received, first send to last receive)."""
    path = str(Path(tempfile.mkdtemp(prefix="bare-", dir=root)) / "bare.sock")
    ready = CTX.Event()
    results: Queue[Any] = CTX.Queue()
    proc = CTX.Process(target=_bare_worker, args=(path, ready, results), daemon=True)
    proc.start()
    try:
        if not ready.wait(READY_TIMEOUT):
            raise BenchError("the bare receiver did not start")
        with SenderGroup.blast(path, items, senders) as group:
            deadline = time.monotonic() + SETTLE_LIMIT
            while (sends := group.poll()) is None:
                if time.monotonic() > deadline:
                    raise BenchError("the bare-loop senders did not finish in time")
                time.sleep(0.05)
        # The end marker queues behind everything sent: when it is read, all was read.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.sendto(b"", path)
        try:
            received, last = results.get(timeout=SETTLE_LIMIT)
        except queue.Empty:
            raise BenchError("the bare receiver did not report") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5.0)
    return sends, received, last - sends.started


def run(qlen: int, root: Path, settings: Settings, data: Data) -> Row:
    """The bare receive loop, blasted like the blast scenario."""
    sends, received, elapsed = run_bare(root, data.blast, settings.senders)
    row = Row(qlen, "bare", sends.sent, sends.dropped, received, None, received / elapsed, None)
    text = (
        f"sent {n(sends.sent)}, dropped at sender {n(sends.dropped)}, received "
        f"{n(received)}; first send to last receive {elapsed:.2f} s: "
        f"{n(row.recv_rate or 0)} received/s"
    )
    return report(row, text)
