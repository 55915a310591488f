"""Sender processes: send like an MTA through libtlsrpt, together, and sum what they did."""

from __future__ import annotations

import contextlib
import queue
import socket
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from types import TracebackType
from typing import Any

from harness.model import CTX, READY_TIMEOUT, SEND_TIMEOUT, BenchError, Sends, Settings
from tlsrpt_reporter.wire.encode import MTA_LIKE_SNDBUF, DatagramSender


def blast_worker(path: str, items: list[bytes], go: Event, results: Queue[Any]) -> None:
    """Send ``items`` once as fast as possible, non-blocking like libtlsrpt."""
    try:
        with DatagramSender(path, sndbuf=MTA_LIKE_SNDBUF) as sender:
            send = sender.send
            go.wait(READY_TIMEOUT)
            started, started_wall = time.monotonic(), time.time()
            for data in items:
                send(data)
            done = time.monotonic()
            results.put(("ok", sender.sent, sender.dropped, started, done, started_wall))
    except Exception as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def blocking_worker(path: str, items: list[bytes], go: Event, results: Queue[Any]) -> None:
    """Send ``items`` with blocking sends: the sender waits when the queue is full."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(SEND_TIMEOUT)
            send = sock.sendto
            go.wait(READY_TIMEOUT)
            started, started_wall = time.monotonic(), time.time()
            for data in items:
                send(data, path)
            results.put(("ok", len(items), 0, started, time.monotonic(), started_wall))
    except Exception as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def paced_worker(
    path: str, pool: list[bytes], settings: Settings, go: Event, results: Queue[Any]
) -> None:
    """Send ``settings.rate`` datagrams per second for ``settings.duration`` s, in bursts every
    millisecond, non-blocking; cycles through ``pool``. Behind schedule, it catches up without
    sleeping."""
    rate = settings.rate
    try:
        total = round(rate * settings.duration)
        with DatagramSender(path, sndbuf=MTA_LIKE_SNDBUF) as sender:
            send = sender.send
            size = len(pool)
            go.wait(READY_TIMEOUT)
            started, started_wall = time.monotonic(), time.time()
            done = tick = 0
            while done < total:
                tick += 1
                due = min(total, tick * rate // 1000)
                while done < due:
                    send(pool[done % size])
                    done += 1
                delay = started + tick / 1000 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            finished = time.monotonic()
            results.put(("ok", sender.sent, sender.dropped, started, finished, started_wall))
    except Exception as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))


class SenderGroup:
    """Sender processes that start sending together; their results are summed."""

    def __init__(self, target: Callable[..., None], args: list[tuple[Any, ...]]) -> None:
        self._go = CTX.Event()
        self._results: Queue[Any] = CTX.Queue()
        self._procs = [
            CTX.Process(target=target, args=(*a, self._go, self._results), daemon=True)
            for a in args
        ]
        self._got: list[tuple[Any, ...]] = []

    @classmethod
    def blast(cls, path: str, items: list[bytes], senders: int) -> SenderGroup:
        """``senders`` non-blocking senders, each sending an interleaved share of ``items``."""
        return cls(blast_worker, [(path, items[i::senders]) for i in range(senders)])

    def __enter__(self) -> SenderGroup:
        for proc in self._procs:
            proc.start()
        self._go.set()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join(5.0)

    def poll(self) -> Sends | None:
        """The summed result once every sender has reported, else None; raises on an error."""
        with contextlib.suppress(queue.Empty):
            while len(self._got) < len(self._procs):
                item = self._results.get_nowait()
                if item[0] == "error":
                    raise BenchError(f"a sender process failed: {item[1]}")
                self._got.append(item[1:])
        if len(self._got) < len(self._procs):
            if not any(proc.is_alive() for proc in self._procs) and self._results.empty():
                raise BenchError("a sender process died without reporting")
            return None
        return Sends(
            sent=sum(g[0] for g in self._got),
            dropped=sum(g[1] for g in self._got),
            started=min(g[2] for g in self._got),
            finished=max(g[3] for g in self._got),
            started_wall=min(g[4] for g in self._got),
        )
