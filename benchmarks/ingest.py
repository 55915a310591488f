"""Ingest benchmark for ``tlsrpt-collectd``: ``python benchmarks/ingest.py [--quick]``.

Scenarios, each against a fresh collector and database in a temporary directory:

``blast``   N realistic datagrams (``samplegen``) sent as fast as possible with non-blocking
            sends like libtlsrpt (EAGAIN = dropped at the sender, counted); stored/s is the
            stored count over the time from the first send until the stored count reached
            its final value.
``steady``  a fixed rate, paced in 1 ms bursts, for a duration: drops at the sender and loss.
``memory``  one datagram for each of many distinct domains, blocking sender (no drops): peak
            RSS (VmHWM) of the daemon and of its receive process.
``bare``    a minimal ``recv()``-and-count loop in its own process, blasted like ``blast``:
            what a Python receiver can take on this machine at all.
``sys4``    sys4's ``tlsrpt-collectd`` (PyPI ``tlsrpt-reporter``), blasted like ``blast``.

A Unix datagram socket queues at most ``net.unix.max_dgram_qlen`` datagrams, a setting of the
network namespace read when the socket is created (shared/PROTOCOL.md "Transport facts"). Each
pass runs at one queue length: the machine's own in this process, any other (default 512) in a
new network namespace (``unshare -n``, root only), where this script re-executes itself, sets
the sysctl and hands its results back as JSON. The host's setting is never changed.

Loss is sent minus stored: every datagram the kernel accepted must be stored, so loss is a
collector bug. The exit code is 0 even when a target is missed; look for "TARGET MISSED".
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import multiprocessing as mp
import os
import pickle
import platform
import queue
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from tlsrpt_reporter.demo import samplegen
from tlsrpt_reporter.wire.encode import MTA_LIKE_SNDBUF, DatagramSender, datagram

QLEN_FILE = Path("/proc/sys/net/unix/max_dgram_qlen")
BLAST_SEED = 8460
BLAST_DOMAINS = 5000
MEMORY_SEED = 2
FLUSH_INTERVAL = 1.0
POLL_EVERY = 0.2
# A count unchanged this long after the senders finished is final: longer than our flush
# interval and than sys4's idle commit (sockettimeout 1 s).
SETTLED_AFTER = 3.0
READY_TIMEOUT = 30.0
SEND_TIMEOUT = 10.0  # a blocking send stuck this long means the receiver is gone
STOP_TIMEOUT = 60.0
SETTLE_LIMIT = 180.0  # after the senders are done
RECV_SIZE = 262_145  # what the collector's receive process asks for: max_datagram_size + 1
TARGET_QLEN = 512
TARGET_BLAST_RATE = 50_000
TARGET_RSS_MIB = 100.0
EXIT_NO_SYSCTL = 3
_PR_SET_PDEATHSIG = 1
_CTX = mp.get_context("fork")

DEFAULTS = {"count": 300_000, "rate": 20_000, "duration": 60.0, "memory_domains": 100_000}
QUICK = {"count": 20_000, "rate": 20_000, "duration": 5.0, "memory_domains": 10_000}


class BenchError(Exception):
    """A scenario could not be run (a process failed to start, died or hung)."""


@dataclass(frozen=True)
class Settings:
    """The sizes of one run, as resolved from the command line."""

    count: int
    rate: int
    duration: float
    memory_domains: int
    senders: int
    only: str = "blast,steady,memory,burst,bare,sys4"

    def as_args(self) -> list[str]:
        """The command-line options that reproduce these settings."""
        return [
            f"--only={self.only}",
            f"--count={self.count}",
            f"--rate={self.rate}",
            f"--duration={self.duration}",
            f"--memory-domains={self.memory_domains}",
            f"--senders={self.senders}",
        ]


@dataclass(frozen=True)
class Data:
    """Pre-generated datagrams: the realistic mix, and one per distinct domain."""

    blast: list[bytes]
    distinct: list[bytes]

    @classmethod
    def generate(cls, settings: Settings) -> Data:
        """Build both sets, before anything is timed (samplegen is the slow part)."""
        blast = list(samplegen.sessions(BLAST_SEED, BLAST_DOMAINS, settings.count))
        rng = random.Random(MEMORY_SEED)
        distinct = []
        for index in range(settings.memory_domains):
            domain = samplegen.Domain(rng, index)
            policy = domain.policy(rng) | {"t": 0, "f": 0}
            distinct.append(datagram(domain.name, [policy], domain.record))
        return cls(blast, distinct)

    def save(self, path: Path) -> None:
        """Write the sets for a re-executed pass."""
        path.write_bytes(pickle.dumps((self.blast, self.distinct), pickle.HIGHEST_PROTOCOL))

    @classmethod
    def load(cls, path: Path) -> Data:
        """Read what :meth:`save` wrote."""
        blast, distinct = pickle.loads(path.read_bytes())
        return cls(blast, distinct)


@dataclass
class Row:
    """One scenario's result. ``stored`` is what the bare loop received, for ``bare``.

    ``stored_rate``: stored over first send to final stored count (flush delay included);
    ``recv_rate``: stored over first send to the receive of the last datagram.
    """

    qlen: int
    scenario: str
    sent: int
    dropped: int
    stored: int
    stored_rate: float | None
    recv_rate: float | None
    rss_mib: float | None
    note: str = ""

    @property
    def loss(self) -> int:
        """Datagrams the kernel accepted but nobody stored (received, for bare)."""
        return self.sent - self.stored


@dataclass(frozen=True)
class Sends:
    """What the sender processes did; times are ``time.monotonic()`` (system-wide), except
    ``started_wall``, the first send in ``time.time()`` to compare with the collector's stamps."""

    sent: int
    dropped: int
    started: float
    finished: float
    started_wall: float


@dataclass(frozen=True)
class Outcome:
    """A collector run: what was sent, what it stored, when, and its memory."""

    sends: Sends
    stored: int
    elapsed: float
    rss_kib: dict[str, int]
    exit_code: int
    counters: dict[str, int]
    received_in: float | None  # first send to the collector's receive stamp of the last batch


# --- sender processes -------------------------------------------------------------------------


def _blast_worker(path: str, items: list[bytes], go: Event, results: Queue[Any]) -> None:
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


def _blocking_worker(path: str, items: list[bytes], go: Event, results: Queue[Any]) -> None:
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


def _paced_worker(
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
        self._go = _CTX.Event()
        self._results: Queue[Any] = _CTX.Queue()
        self._procs = [
            _CTX.Process(target=target, args=(*a, self._go, self._results), daemon=True)
            for a in args
        ]
        self._got: list[tuple[Any, ...]] = []

    @classmethod
    def blast(cls, path: str, items: list[bytes], senders: int) -> SenderGroup:
        """``senders`` non-blocking senders, each sending an interleaved share of ``items``."""
        return cls(_blast_worker, [(path, items[i::senders]) for i in range(senders)])

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


# --- collectors under test --------------------------------------------------------------------


def _die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the benchmark dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _vm_hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of a process in KiB; 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (of all its threads)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


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
        self.children = _children(self.proc.pid)

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
        rss = {"daemon": _vm_hwm_kib(self.proc.pid)}
        self.children = _children(self.proc.pid)
        for n, pid in enumerate(self.children):
            rss["receiver" if n == 0 else f"child{n}"] = _vm_hwm_kib(pid)
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


def _read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that never blocks a writer for long."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)


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
            with contextlib.closing(_read_only(self.db)) as conn:
                rows = conn.execute("SELECT name, SUM(value) FROM day_counter GROUP BY name")
                return {name: int(value) for name, value in rows}
        except sqlite3.Error:
            return {}

    def last_receive(self) -> float | None:
        """The newest ``policy_count.last_seen``: the receive process's time stamp of the last
        batch it handed over (its first datagram), so within a batch of the last receive."""
        try:
            with contextlib.closing(_read_only(self.db)) as conn:
                value = conn.execute("SELECT MAX(last_seen) FROM policy_count").fetchone()[0]
                return float(value) if value is not None else None
        except sqlite3.Error:
            return None

    def stored(self) -> int | None:
        """The 'accepted' counter: datagrams decoded and written."""
        try:
            with contextlib.closing(_read_only(self.db)) as conn:
                row = conn.execute(
                    "SELECT COALESCE(SUM(value), 0) FROM day_counter WHERE name = 'accepted'"
                ).fetchone()
                return int(row[0])
        except sqlite3.Error:
            return None


class Sys4Collector(Service):
    """sys4's ``tlsrpt-collectd`` 0.6 (notes: /tmp/sys4_notes.md)."""

    name = "sys4"

    def __init__(self, root: Path, executable: str) -> None:
        super().__init__(root)
        self.executable = executable

    def command(self) -> list[str]:
        """Its defaults, but commit when idle for 1 s (like our flush) and survive bad data."""
        return [
            self.executable,
            "--storage",
            f"sqlite://{self.db}",
            "--socketname",
            self.socket_path,
            "--sockettimeout",
            "1",
            "--dump_path_for_invalid_datagram",
            str(self.dir / "invalid.dat"),
            "--log_level",
            "info",
        ]

    def is_ready(self, log: str) -> bool:
        """A fresh database is created, moved aside by the initial rollover and created again:
        ready once the second one is set up."""
        _, moved, after = log.partition("Old database moved to")
        return bool(moved) and "setup finished" in after

    def stored(self) -> int | None:
        """Sum of ``cntrtotal`` (one per policy; samplegen sends one policy per datagram) over
        the database and the one a UTC-midnight rollover moved aside."""
        total = 0
        for path in (self.db, self.db.with_name(self.db.name + ".yesterday")):
            if not path.exists():
                continue
            try:
                with contextlib.closing(_read_only(path)) as conn:
                    total += conn.execute(
                        "SELECT COALESCE(SUM(cntrtotal), 0) FROM finalresults"
                    ).fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    return None
        return total


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


# --- the bare receive loop --------------------------------------------------------------------


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
    ready = _CTX.Event()
    results: Queue[Any] = _CTX.Queue()
    proc = _CTX.Process(target=_bare_worker, args=(path, ready, results), daemon=True)
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


# --- one pass at one queue length -------------------------------------------------------------


def _n(value: float) -> str:
    """A count or rate with thousands separators."""
    return f"{value:,.0f}"


def _mib(kib: int) -> float:
    """KiB to MiB."""
    return kib / 1024


def _rss_text(rss: dict[str, int]) -> str:
    """Per-process peak RSS and the sum, e.g. 'daemon 40.1 + receiver 12.0 = 52.1 MiB'."""
    parts = " + ".join(f"{role} {_mib(kib):.1f}" for role, kib in rss.items())
    return f"{parts} = {_mib(sum(rss.values())):.1f} MiB"


def targets_missed(row: Row) -> list[str]:
    """The "TARGET MISSED" lines a result deserves."""
    missed = []
    where = f"(qlen {row.qlen})"
    if row.scenario in ("blast", "steady", "memory", "burst") and row.loss:
        missed.append(
            f"TARGET MISSED {where}: {row.scenario}: loss {_n(row.loss)}, must be 0 "
            "(accepted by the kernel but not stored: a collector bug)"
        )
    rate = row.stored_rate or 0
    if row.scenario == "blast" and row.qlen == TARGET_QLEN and rate < TARGET_BLAST_RATE:
        missed.append(
            f"TARGET MISSED {where}: blast stored {_n(rate)}/s, target >= {_n(TARGET_BLAST_RATE)}/s"
        )
    if row.scenario == "steady" and row.qlen == TARGET_QLEN and row.dropped:
        missed.append(
            f"TARGET MISSED {where}: steady dropped {_n(row.dropped)} at the sender, target 0"
        )
    if row.scenario == "memory" and (row.rss_mib or 0) >= TARGET_RSS_MIB:
        missed.append(
            f"TARGET MISSED {where}: memory peak RSS {row.rss_mib:.1f} MiB, "
            f"target < {TARGET_RSS_MIB:.0f} MB"
        )
    return missed


def ratios(rows: list[Row]) -> list[str]:
    """Our blast against the bare loop and against sys4, for the rows of one queue length."""
    found = {r.scenario: r for r in rows}
    ours, bare, sys4 = found.get("blast"), found.get("bare"), found.get("sys4")
    lines = []
    if ours and bare and ours.stored_rate and ours.recv_rate and bare.recv_rate:
        lines.append(
            f"collector/bare = {ours.stored_rate / bare.recv_rate:.2f} "
            f"(stored/s over bare received/s), {ours.recv_rate / bare.recv_rate:.2f} "
            "(received/s over bare received/s)"
        )
    if ours and sys4 and ours.stored_rate and sys4.stored_rate:
        lines.append(
            f"ours/sys4 = {ours.stored_rate / sys4.stored_rate:.2f} (stored/s over stored/s)"
        )
    return lines


def _report(row: Row, text: str) -> Row:
    """Print a scenario's line and any missed target; return the row."""
    print(f"[qlen {row.qlen}] {row.scenario}: {text}", flush=True)
    for line in targets_missed(row):
        print(f"  {line}", flush=True)
    return row


def _outcome_row(qlen: int, scenario: str, out: Outcome, note: str = "") -> Row:
    """A row from a collector run, with what went wrong (if anything) in the note."""
    notes = [note] if note else []
    if out.exit_code != 0:
        notes.append(f"exit code {out.exit_code}")
    for name, value in sorted(out.counters.items()):
        if value and (name == "rejected" or name.startswith("dropped")):
            notes.append(f"{name} {_n(value)}")
    return Row(
        qlen=qlen,
        scenario=scenario,
        sent=out.sends.sent,
        dropped=out.sends.dropped,
        stored=out.stored,
        stored_rate=out.stored / out.elapsed if out.elapsed > 0 else None,
        recv_rate=out.stored / out.received_in if out.received_in else None,
        rss_mib=_mib(sum(out.rss_kib.values())) if out.rss_kib else None,
        note=", ".join(notes),
    )


def _timing_text(out: Outcome) -> str:
    """Elapsed times and rates of a blast."""
    text = (
        f"first send to final stored count {out.elapsed:.2f} s (includes the wait for the next "
        f"commit, up to ~1 s): {_n(out.stored / out.elapsed)} stored/s"
    )
    if out.received_in:
        text += (
            f"; first send to last receive {out.received_in:.2f} s: "
            f"{_n(out.stored / out.received_in)} received/s"
        )
    return text


def _loss_detail(out: Outcome) -> str:
    """Where the missing datagrams went, by the collector's own counters."""
    c = out.counters
    return (
        f"\n  LOSS: the kernel accepted {_n(out.sends.sent)}; the collector counted received "
        f"{_n(c.get('received', 0))}, accepted {_n(c.get('accepted', 0))}, rejected "
        f"{_n(c.get('rejected', 0))}, dropped:backlog-full {_n(c.get('dropped:backlog-full', 0))}"
        f", dropped:memory-full {_n(c.get('dropped:memory-full', 0))}; exit code {out.exit_code}"
    )


def _blast(service: Service, settings: Settings, data: Data) -> Outcome:
    """Blast a started collector like libtlsrpt would, and wait for its final count."""
    group = SenderGroup.blast(service.socket_path, data.blast, settings.senders)
    return drive(service, group, SETTLE_LIMIT)


def scenario_blast(qlen: int, root: Path, settings: Settings, data: Data) -> Row:
    """(a) Everything at once, non-blocking."""
    with OurCollector(root) as collector:
        out = _blast(collector, settings, data)
    row = _outcome_row(qlen, "blast", out)
    text = (
        f"sent {_n(out.sends.sent)}, dropped at sender {_n(out.sends.dropped)} (sending took "
        f"{out.sends.finished - out.sends.started:.2f} s), stored {_n(out.stored)}, loss "
        f"{_n(row.loss)}; {_timing_text(out)}; peak RSS {_rss_text(out.rss_kib)}"
    )
    return _report(row, text + (_loss_detail(out) if row.loss else ""))


def scenario_steady(qlen: int, root: Path, settings: Settings, data: Data) -> Row:
    """(b) A fixed rate for a duration, non-blocking."""
    with OurCollector(root) as collector:
        group = SenderGroup(_paced_worker, [(collector.socket_path, data.blast, settings)])
        out = drive(collector, group, settings.duration * 3 + SETTLE_LIMIT)
    took = out.sends.finished - out.sends.started
    offered = (out.sends.sent + out.sends.dropped) / took
    row = dataclasses.replace(
        _outcome_row(qlen, "steady", out, note=f"offered {_n(offered)}/s"),
        stored_rate=None,
        recv_rate=None,
    )
    text = (
        f"{_n(settings.rate)}/s for {settings.duration:g} s (achieved {_n(offered)}/s over "
        f"{took:.2f} s): sent {_n(out.sends.sent)}, dropped at sender {_n(out.sends.dropped)}, "
        f"stored {_n(out.stored)}, loss {_n(row.loss)}; peak RSS {_rss_text(out.rss_kib)}"
    )
    return _report(row, text + (_loss_detail(out) if row.loss else ""))


def scenario_memory_paced(qlen: int, root: Path, settings: Settings, data: Data) -> Row:
    """(c) Many distinct domains in one day, arriving at the steady rate like MTA traffic."""
    paced = dataclasses.replace(settings, duration=len(data.distinct) / settings.rate)
    with OurCollector(root) as collector:
        group = SenderGroup(_paced_worker, [(collector.socket_path, data.distinct, paced)])
        out = drive(collector, group, SETTLE_LIMIT * 2)
    row = _outcome_row(
        qlen, "memory", out, note=f"{_n(len(data.distinct))} distinct, {_n(settings.rate)}/s"
    )
    text = (
        f"{_n(len(data.distinct))} datagrams for distinct domains at {_n(settings.rate)}/s, "
        f"non-blocking: sent {_n(out.sends.sent)}, dropped {_n(out.sends.dropped)}, stored "
        f"{_n(out.stored)}, loss {_n(row.loss)}; peak RSS (VmHWM) {_rss_text(out.rss_kib)}"
    )
    return _report(row, text + (_loss_detail(out) if row.loss else ""))


def scenario_memory(qlen: int, root: Path, data: Data) -> Row:
    """(c') The same domains as one burst with a blocking sender: the worst case, for
    information (the collector buffers what it cannot store yet)."""
    with OurCollector(root) as collector:
        group = SenderGroup(_blocking_worker, [(collector.socket_path, data.distinct)])
        out = drive(collector, group, SETTLE_LIMIT * 2)
    row = _outcome_row(qlen, "burst", out, note=f"{_n(len(data.distinct))} distinct, blocking")
    text = (
        f"{_n(len(data.distinct))} datagrams for distinct domains, blocking sends: sent "
        f"{_n(out.sends.sent)}, stored {_n(out.stored)}, loss {_n(row.loss)} in "
        f"{out.elapsed:.2f} s; peak RSS (VmHWM) {_rss_text(out.rss_kib)}"
    )
    return _report(row, text + (_loss_detail(out) if row.loss else ""))


def scenario_bare(qlen: int, root: Path, settings: Settings, data: Data) -> Row:
    """(d) The bare receive loop, blasted like (a)."""
    sends, received, elapsed = run_bare(root, data.blast, settings.senders)
    row = Row(qlen, "bare", sends.sent, sends.dropped, received, None, received / elapsed, None)
    text = (
        f"sent {_n(sends.sent)}, dropped at sender {_n(sends.dropped)}, received "
        f"{_n(received)}; first send to last receive {elapsed:.2f} s: "
        f"{_n(row.recv_rate or 0)} received/s"
    )
    return _report(row, text)


def scenario_sys4(qlen: int, root: Path, settings: Settings, data: Data, exe: str) -> Row:
    """(e) sys4's collector, blasted like (a)."""
    with Sys4Collector(root, exe) as collector:
        out = _blast(collector, settings, data)
    row = _outcome_row(qlen, "sys4", out)
    text = (
        f"sent {_n(out.sends.sent)}, dropped at sender {_n(out.sends.dropped)}, stored "
        f"{_n(out.stored)}, loss {_n(row.loss)}; {_timing_text(out)}; peak RSS "
        f"{_rss_text(out.rss_kib)}"
    )
    return _report(row, text)


def run_pass(
    qlen: int, root: Path, settings: Settings, data: Data, sys4: str | None
) -> tuple[list[Row], list[str]]:
    """Every scenario at the queue length in force in this network namespace.

    Returns the rows and a line for each scenario that could not be run: a collector that
    dies or hangs is reported and the pass goes on.
    """
    print(
        f"[qlen {qlen}] queue length in use: {read_qlen()} "
        f"(network namespace {os.readlink('/proc/self/ns/net')})",
        flush=True,
    )
    scenarios: list[tuple[str, Callable[[], Row]]] = [
        ("blast", lambda: scenario_blast(qlen, root, settings, data)),
        ("steady", lambda: scenario_steady(qlen, root, settings, data)),
        ("memory", lambda: scenario_memory_paced(qlen, root, settings, data)),
        ("burst", lambda: scenario_memory(qlen, root, data)),
        ("bare", lambda: scenario_bare(qlen, root, settings, data)),
    ]
    if sys4 is not None:
        scenarios.append(("sys4", lambda: scenario_sys4(qlen, root, settings, data, sys4)))
    wanted = settings.only.split(",")
    scenarios = [(name, run) for name, run in scenarios if name in wanted]
    rows: list[Row] = []
    failures: list[str] = []
    for name, run in scenarios:
        try:
            rows.append(run())
        except BenchError as exc:
            print(f"[qlen {qlen}] {name}: FAILED: {exc}", flush=True)
            first = str(exc).splitlines()[0].rstrip(":")
            failures.append(f"qlen {qlen}: {name} FAILED: {first} (details above)")
    for line in ratios(rows):
        print(f"[qlen {qlen}] {line}", flush=True)
    return rows, failures


# --- outer driver -----------------------------------------------------------------------------


def read_qlen() -> int:
    """``net.unix.max_dgram_qlen`` of this process's network namespace."""
    return int(QLEN_FILE.read_text())


def find_sys4(venv: Path) -> tuple[str | None, str]:
    """sys4's ``tlsrpt-collectd`` in ``venv``, installing it there if missing; (path, why not)."""
    exe = venv / "bin" / "tlsrpt-collectd"
    if exe.exists():
        return str(exe), ""
    print(f"sys4: {exe} missing, installing tlsrpt-reporter into {venv} ...", flush=True)
    steps = (
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", "tlsrpt-reporter"],
    )
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(cmd)} failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"{' '.join(cmd)} exited with {done.returncode}: {tail[0]}"
    if not exe.exists():
        return None, f"installed, but {exe} is missing"
    return str(exe), ""


def run_namespaced(
    qlen: int, root: Path, settings: Settings, data_file: Path, sys4: str | None
) -> tuple[list[Row], list[str]]:
    """Re-execute this script in a new network namespace at ``qlen``.

    Returns the pass's rows and failure lines, or no rows and why the pass was skipped.
    """
    why = _namespaced(qlen, root, settings, data_file, sys4)
    result = root / f"result-{qlen}.json"
    if why or not result.exists():
        return [], [f"qlen {qlen} measurement skipped: {why or 'it wrote no result'}"]
    got = json.loads(result.read_text())
    return [Row(**r) for r in got["rows"]], got["failures"]


def _namespaced(
    qlen: int, root: Path, settings: Settings, data_file: Path, sys4: str | None
) -> str:
    """Run the pass under ``unshare -n``; why it could not run, or "" when it did."""
    if os.geteuid() != 0:
        return "not running as root (needed to set the sysctl in a new network namespace)"
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) not found"
    result = root / f"result-{qlen}.json"
    errors = root / f"stderr-{qlen}.txt"
    cmd = [unshare, "-n", "--", sys.executable, str(Path(__file__).resolve()), "--_inner"]
    cmd += [f"--qlen={qlen}", f"--_data={data_file}", f"--_result={result}", *settings.as_args()]
    if sys4 is not None:
        cmd.append(f"--_sys4={sys4}")
    limit = 3 * settings.duration + 1800
    with errors.open("wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=err)
        try:
            code = proc.wait(limit)
        except subprocess.TimeoutExpired:
            return f"the namespaced pass did not finish within {limit:.0f} s"
        finally:
            if proc.poll() is None:  # a timeout, or this process is being stopped
                proc.terminate()  # lets the pass stop its collectors and remove its files
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    text = errors.read_text(errors="replace").strip()
    if code == 0:
        if text:
            print(text, file=sys.stderr)
        return ""
    last = text.splitlines()[-1] if text else "no error output"
    if code == EXIT_NO_SYSCTL:
        return last
    if "\n" in text:  # a traceback: show it whole
        print(text, file=sys.stderr)
    return f"the namespaced pass failed (exit code {code}): {last}"


def inner_main(args: argparse.Namespace, settings: Settings) -> int:
    """The re-executed part: set the queue length in this namespace, run, write JSON."""
    qlen = int(args.qlen)
    try:
        QLEN_FILE.write_text(f"{qlen}\n")
    except OSError as exc:
        print(f"cannot set net.unix.max_dgram_qlen to {qlen} ({exc.strerror})", file=sys.stderr)
        return EXIT_NO_SYSCTL
    if read_qlen() != qlen:
        print(f"net.unix.max_dgram_qlen reads {read_qlen()} after setting {qlen}", file=sys.stderr)
        return EXIT_NO_SYSCTL
    data = Data.load(Path(args._data))
    with tempfile.TemporaryDirectory(prefix="tlsrpt-bench-") as tmp:
        rows, failures = run_pass(qlen, Path(tmp), settings, data, args._sys4)
    found = {"rows": [dataclasses.asdict(r) for r in rows], "failures": failures}
    Path(args._result).write_text(json.dumps(found))
    return 0


def print_summary(rows: list[Row], notes: list[str], host_qlen: int) -> None:
    """The final table, ratios, what was skipped or failed, and every missed target."""
    print("\n=== summary ===")
    head = (
        f"{'qlen':<10} {'scenario':<8} {'sent':>9} {'dropped':>9} {'stored':>9} {'loss':>6} "
        f"{'stored/s':>9} {'recv/s':>9} {'RSS MiB':>8}  note"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        label = f"{r.qlen} (host)" if r.qlen == host_qlen else str(r.qlen)
        stored_rate = _n(r.stored_rate) if r.stored_rate is not None else "-"
        recv_rate = _n(r.recv_rate) if r.recv_rate is not None else "-"
        rss = f"{r.rss_mib:.1f}" if r.rss_mib is not None else "-"
        print(
            f"{label:<10} {r.scenario:<8} {r.sent:>9,} {r.dropped:>9,} {r.stored:>9,} "
            f"{r.loss:>6,} {stored_rate:>9} {recv_rate:>9} {rss:>8}  {r.note}"
        )
    print(
        "sent = accepted by the kernel; dropped = EAGAIN at the sender; loss = sent - stored;\n"
        "stored/s = stored / (first send .. final count in the database, commit wait included);\n"
        "recv/s = stored / (first send .. receive of the last datagram); bare: stored = "
        "received;\nRSS = peak (VmHWM) of the daemon + its receive process"
    )
    for qlen in dict.fromkeys(r.qlen for r in rows):
        for line in ratios([r for r in rows if r.qlen == qlen]):
            print(f"qlen {qlen}: {line}")
    for line in notes:
        print(line)
    if not any(r.qlen == TARGET_QLEN for r in rows):
        print(
            f"not evaluated: the qlen {TARGET_QLEN} targets (blast >= {_n(TARGET_BLAST_RATE)} "
            "stored/s, steady without drops), for want of that measurement"
        )
    missed = [line for r in rows for line in targets_missed(r)]
    print("\n".join(missed) if missed else "no target missed")


def resolve_qlens(spec: str, host_qlen: int) -> list[int]:
    """'512,host' -> [512, host value], without repeats."""
    qlens: list[int] = []
    for item in spec.split(","):
        value = host_qlen if item.strip() == "host" else int(item)
        if value < 1:
            raise ValueError(f"queue length must be >= 1, got {value}")
        if value not in qlens:
            qlens.append(value)
    return qlens


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, help="datagrams per blast (default 300000)")
    p.add_argument("--rate", type=int, help="steady datagrams per second (default 20000)")
    p.add_argument("--duration", type=float, help="steady seconds (default 60)")
    p.add_argument("--memory-domains", type=int, help="distinct domains (default 100000)")
    p.add_argument(
        "--senders",
        type=int,
        default=1,
        help="blast sender processes (default 1: one Python sender already gets EAGAIN on most "
        "sends here, and a second one only competes for the CPUs)",
    )
    p.add_argument(
        "--qlen", default="512,host", help="queue lengths, numbers or 'host' (default 512,host)"
    )
    p.add_argument("--skip-sys4", action="store_true", help="skip the sys4 comparison")
    p.add_argument(
        "--only",
        default="blast,steady,memory,burst,bare,sys4",
        help="comma-separated scenarios to run (default: all)",
    )
    p.add_argument("--sys4-venv", default="/tmp/sys4venv", help="venv with sys4's collector")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: count 20000, duration 5, 10000 domains"
    )
    p.add_argument("--_inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_data", help=argparse.SUPPRESS)
    p.add_argument("--_result", help=argparse.SUPPRESS)
    p.add_argument("--_sys4", help=argparse.SUPPRESS)
    return p


def _settings(args: argparse.Namespace) -> Settings:
    """Explicit options win over --quick, which wins over the defaults."""
    base = QUICK if args.quick else DEFAULTS
    values = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}
    settings = Settings(
        count=int(values["count"]),
        rate=int(values["rate"]),
        duration=float(values["duration"]),
        memory_domains=int(values["memory_domains"]),
        senders=args.senders,
        only=args.only,
    )
    if min(settings.count, settings.rate, settings.memory_domains, settings.senders) < 1:
        raise SystemExit("--count, --rate, --memory-domains and --senders must be >= 1")
    if settings.duration <= 0:
        raise SystemExit("--duration must be > 0")
    return settings


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: unwind, so that every ``finally`` stops what this process started."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 unless it could not run at all."""
    signal.signal(signal.SIGTERM, _terminate)
    args = build_parser().parse_args(argv)
    settings = _settings(args)
    if args._inner:
        return inner_main(args, settings)
    host_qlen = read_qlen()
    print(f"queue length (net.unix.max_dgram_qlen) of this machine: {host_qlen}")
    print(
        f"CPUs: {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"Python {platform.python_version()} ({sys.executable})")
    print(f"settings: {' '.join(settings.as_args())} (collector flush_interval {FLUSH_INTERVAL} s)")
    qlens = resolve_qlens(args.qlen, host_qlen)
    notes: list[str] = []
    sys4: str | None = None
    if args.skip_sys4:
        notes.append("sys4 comparison skipped: --skip-sys4")
    else:
        sys4, why = find_sys4(Path(args.sys4_venv))
        if sys4 is None:
            notes.append(f"sys4 comparison skipped: {why}")
            print(notes[-1], flush=True)
    started = time.monotonic()
    data = Data.generate(settings)
    print(
        f"generated {len(data.blast):,} + {len(data.distinct):,} datagrams in "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tlsrpt-bench-") as tmp:
        root = Path(tmp)
        data_file = root / "data.pickle"
        for qlen in qlens:
            print(f"\n=== queue length {qlen} ===", flush=True)
            if qlen == host_qlen:
                got, lines = run_pass(qlen, root, settings, data, sys4)
            else:
                if not data_file.exists():
                    data.save(data_file)
                got, lines = run_namespaced(qlen, root, settings, data_file, sys4)
                if not got:
                    print("\n".join(lines), flush=True)
            rows += got
            notes += lines
    print_summary(rows, notes, host_qlen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
