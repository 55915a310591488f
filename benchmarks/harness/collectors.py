"""A collector under test as a subprocess, and a run of sender processes against it."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from harness.measure import children, vm_hwm_kib
from harness.model import (
    FLUSH_INTERVAL,
    POLL_EVERY,
    READY_TIMEOUT,
    SETTLE_LIMIT,
    SETTLED_AFTER,
    STOP_TIMEOUT,
    BenchError,
    Outcome,
    Sends,
)
from harness.senders import SenderGroup

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the benchmark dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that never blocks a writer for long."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)


class Service:
    """A collector under test: a subprocess with its own directory, socket and database."""

    name = ""

    def __init__(self, root: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=root))
        self.socket_path = str(self.dir / "collectd.sock")
        self.db = self.dir / "collectd.sqlite"
        self.log = self.dir / "collectd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.children: list[int] = []

    def command(self) -> list[str]:
        """The command line that starts the collector."""
        raise NotImplementedError

    def is_ready(self, log: str) -> bool:
        """Whether the collector's log says it is receiving."""
        raise NotImplementedError

    def stored(self) -> int | None:
        """Datagrams stored so far (read-only); None when the database cannot be read now."""
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        """Counters worth reporting after a run (besides the stored count)."""
        return {}

    def last_receive(self) -> float | None:
        """When (Unix time) the collector received the last datagram it stored, if it says."""
        return None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the collector's log, for error messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def __enter__(self) -> Service:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        """Start the collector and wait until its log says it is ready."""
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.is_ready(self.log.read_text(errors="replace")):
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with code {self.proc.returncode} before it was "
                    f"ready:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name} not ready after {READY_TIMEOUT} s:\n{self.log_tail()}"
                )
            time.sleep(0.02)
        self.children = children(self.proc.pid)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            for pid in self.children:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def alive(self) -> bool:
        """Whether the collector process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def peak_rss_kib(self) -> dict[str, int]:
        """VmHWM of the collector process and of each child it has now, by role."""
        assert self.proc is not None
        rss = {"daemon": vm_hwm_kib(self.proc.pid)}
        self.children = children(self.proc.pid)
        for n, pid in enumerate(self.children):
            rss["receiver" if n == 0 else f"child{n}"] = vm_hwm_kib(pid)
        return rss

    def stop(self) -> tuple[int, float]:
        """SIGTERM, wait for the exit; (exit code, time of exit)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BenchError(
                f"{self.name} did not exit within {STOP_TIMEOUT} s of SIGTERM"
            ) from None
        return code, time.monotonic()


class OurCollector(Service):
    """This project's ``tlsrpt-collectd``, configured through a TOML file."""

    name = "ours"

    def command(self) -> list[str]:
        """``python -m tlsrpt_collectd.daemon --config CFG`` with a [collectd] section."""
        config = self.dir / "collectd.toml"
        config.write_text(
            "[collectd]\n"
            f"socket = {json.dumps(self.socket_path)}\n"
            f"db = {json.dumps(str(self.db))}\n"
            'socket_mode = "0600"\n'
            f"flush_interval = {FLUSH_INTERVAL}\n"
        )
        return [sys.executable, "-m", "tlsrpt_collectd.daemon", "--config", str(config)]

    def is_ready(self, log: str) -> bool:
        """The daemon logs "ready: receiving on ..." once its receive process runs."""
        return "ready: receiving on" in log

    def counters(self) -> dict[str, int]:
        """Every per-day counter, summed over the days of this run (a fresh database)."""
        try:
            with contextlib.closing(read_only(self.db)) as conn:
                rows = conn.execute("SELECT name, SUM(value) FROM day_counter GROUP BY name")
                return {name: int(value) for name, value in rows}
        except sqlite3.Error:
            return {}

    def last_receive(self) -> float | None:
        """The newest ``policy_count.last_seen``: the receive process's time stamp of the last
        batch it handed over (its first datagram), so within a batch of the last receive."""
        try:
            with contextlib.closing(read_only(self.db)) as conn:
                value = conn.execute("SELECT MAX(last_seen) FROM policy_count").fetchone()[0]
                return float(value) if value is not None else None
        except sqlite3.Error:
            return None

    def stored(self) -> int | None:
        """The 'accepted' counter: datagrams decoded and written."""
        try:
            with contextlib.closing(read_only(self.db)) as conn:
                row = conn.execute(
                    "SELECT COALESCE(SUM(value), 0) FROM day_counter WHERE name = 'accepted'"
                ).fetchone()
                return int(row[0])
        except sqlite3.Error:
            return None


def _watch(
    service: Service, group: SenderGroup, send_limit: float
) -> tuple[list[tuple[float, int]], Sends]:
    """Poll the stored count while the senders run and until it is final.

    Final: it equals what the kernel accepted, or it stood still for SETTLED_AFTER seconds
    after the senders finished. Returns the (time, count) history and the senders' result.
    """
    history: list[tuple[float, int]] = []
    sends: Sends | None = None
    sends_at = changed_at = 0.0
    last = -1
    deadline = time.monotonic() + send_limit
    while True:
        if sends is None:
            sends = group.poll()
            if sends is not None:
                sends_at = time.monotonic()
                deadline = sends_at + SETTLE_LIMIT
        count = service.stored()
        now = time.monotonic()
        if count is not None:
            history.append((now, count))
            if count != last:
                last, changed_at = count, now
        if sends is not None and (
            last >= sends.sent or now - max(changed_at, sends_at) >= SETTLED_AFTER
        ):
            return history, sends
        if not service.alive():
            raise BenchError(f"{service.name} died during the run:\n{service.log_tail()}")
        if now > deadline:
            raise BenchError(f"{service.name}: stored count not final in time (at {last})")
        time.sleep(POLL_EVERY)


def drive(service: Service, group: SenderGroup, send_limit: float) -> Outcome:
    """Run the senders against a started service, wait for the final count, stop it cleanly.

    ``elapsed`` runs from the first send to the first poll that saw the final count (or to
    the exit, when only the shutdown flush wrote the last of it).
    """
    with group:
        history, sends = _watch(service, group, send_limit)
    rss = service.peak_rss_kib()
    code, exited_at = service.stop()
    stored = service.stored() or 0
    final_at = next((t for t, count in history if count == stored), exited_at)
    last = service.last_receive()
    received_in = last - sends.started_wall if last is not None else None
    return Outcome(
        sends, stored, final_at - sends.started, rss, code, service.counters(), received_in
    )


def run_collector(
    service: Service, senders: Callable[[str], SenderGroup], send_limit: float
) -> Outcome:
    """Start ``service``, drive the senders ``senders(its socket path)`` against it, stop it."""
    with service:
        return drive(service, senders(service.socket_path), send_limit)
