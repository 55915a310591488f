"""A real tlsrpt-collectd process on a real socket and SQLite file, and ways to feed it."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tlsrpt_reporter.store import collected as store

START_TIMEOUT = 20.0


def make_traversable(path: Path) -> None:
    """Let other users reach ``path``: add o+x to it and each ancestor directory lacking it.

    Only the search bit is added, never read or write. Needed where a process running as
    another user (nobody for the permission tests, postfix or Debian-exim for the MTA rigs)
    opens a file by its absolute path below a 0700 directory: pytest's /tmp/pytest-of-root/,
    or a checkout cloned into a ``mktemp -d`` directory.
    """
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def today() -> str:
    """The current UTC day, as the collector attributes datagrams."""
    return time.strftime("%Y-%m-%d", time.gmtime())


def send_all(path: str | Path, datagrams: list[bytes], timeout: float = 30.0) -> int:
    """Send every datagram, waiting for queue room (never dropping); returns the count sent."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deadline = time.monotonic() + timeout
    try:
        for data in datagrams:
            while True:
                try:
                    sock.sendto(data, socket.MSG_DONTWAIT, str(path))
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                        raise
                    if time.monotonic() > deadline:
                        raise TimeoutError("collector queue stayed full") from None
                    time.sleep(0.0005)
    finally:
        sock.close()
    return len(datagrams)


@dataclass
class Collector:
    """A running collector subprocess and its files."""

    workdir: Path
    config: Path
    socket: Path
    db: Path
    logfile: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self, *extra: str, wait: bool = True, prefix: tuple[str, ...] = ()) -> Collector:
        """Start the daemon (optionally behind a wrapper ``prefix``) and wait until ready."""
        seen = self.log().count("ready: receiving")
        log = self.logfile.open("ab")
        cmd = [
            *prefix,
            sys.executable,
            "-m",
            "tlsrpt_collectd.daemon",
            "--config",
            str(self.config),
        ]
        self.proc = subprocess.Popen(
            [*cmd, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ | self.extra_env,
        )
        log.close()
        if wait:
            self.wait_for_log("ready: receiving", count=seen + 1)
        return self

    def log(self) -> str:
        """Everything the collector logged so far."""
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_for_log(self, text: str, count: int = 1, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``text`` appears ``count`` times in the log."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"collector exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in collector log:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the daemon and return its exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def counters(self, day: str | None = None) -> dict[str, int]:
        """The per-day counters in the database (0 for a database not yet created)."""
        if not self.db.exists():
            return {}
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return store.day_counters(conn, day or today())
        except sqlite3.OperationalError:
            return {}
        finally:
            conn.close()

    def wait_for_counter(self, name: str, value: int, timeout: float = 30.0) -> None:
        """Wait until the stored counter ``name`` reaches ``value``."""
        deadline = time.monotonic() + timeout
        while self.counters().get(name, 0) < value:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} stayed at {self.counters()} < {value}:\n{self.log()}")
            time.sleep(0.1)

    def export(self, day: str | None = None) -> list[dict[str, object]]:
        """The day's aggregates through the real ``export`` command."""
        import json

        out = subprocess.run(
            [sys.executable, "-m", "tlsrpt_reporter.cli", "export", "--db", str(self.db),
             "--day", day or today()],
            capture_output=True,
            check=True,
        )  # fmt: skip
        return [json.loads(line) for line in out.stdout.splitlines()]


def write_config(path: Path, **values: object) -> None:
    """Write a [collectd] TOML section."""
    lines = ["[collectd]"]
    for key, value in values.items():
        rendered = f'"{value}"' if isinstance(value, str | Path) else str(value)
        lines.append(f"{key} = {rendered}")
    path.write_text("\n".join(lines) + "\n")
