"""Ingest benchmark for ``tlsrpt-collectd``: ``python benchmarks/ingest.py [--quick]``.

Scenarios, each against a fresh collector and database in a temporary directory (one module
each in ``ingest_scenarios/``; what they share is in ``harness/``):

``blast``   N realistic datagrams (``samplegen``) sent as fast as possible with non-blocking
            sends like libtlsrpt (EAGAIN = dropped at the sender, counted); stored/s is the
            stored count over the time from the first send until the stored count reached
            its final value.
``steady``  a fixed rate, paced in 1 ms bursts, for a duration: drops at the sender and loss.
``memory``  one datagram for each of many distinct domains at the steady rate, non-blocking:
            peak RSS (VmHWM) of the daemon and of its receive process.
``burst``   the same domains as one burst with a blocking sender (no drops): the worst case.
``bare``    a minimal ``recv()``-and-count loop in its own process, blasted like ``blast``:
            what a Python receiver can take on this machine at all.
``sys4``    sys4's ``tlsrpt-collectd`` (PyPI ``tlsrpt-reporter``), blasted like ``blast``.

A Unix datagram socket queues at most ``net.unix.max_dgram_qlen`` datagrams, a setting of the
network namespace read when the socket is created (docs/protocol.md, "Transport"). Each
pass runs at one queue length: the machine's own in this process, any other (default 512) in a
new network namespace (``unshare -n``, root only), where this script re-executes itself, sets
the sysctl and hands its results back as JSON. The host's setting is never changed.

Loss is sent minus stored: every datagram the kernel accepted must be stored, so loss is a
collector bug. The exit code is 0 even when a target is missed; look for "TARGET MISSED".
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from harness.measure import machine_lines
from harness.model import (
    ALL_SCENARIOS,
    DEFAULTS,
    FLUSH_INTERVAL,
    QUICK,
    BenchError,
    Data,
    Row,
    Settings,
)
from harness.namespace import inner_pass, read_qlen, resolve_qlens, run_namespaced
from harness.output import print_summary, ratios
from ingest_scenarios import bare, blast, burst, memory, steady, sys4

SCRIPT = Path(__file__).resolve()


def run_pass(
    qlen: int, root: Path, settings: Settings, data: Data, sys4_exe: str | None
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
    scenarios: dict[str, Callable[[int, Path, Settings, Data], Row]] = {
        "blast": blast.run,
        "steady": steady.run,
        "memory": memory.run,
        "burst": burst.run,
        "bare": bare.run,
    }
    if sys4_exe is not None:
        scenarios["sys4"] = functools.partial(sys4.run, exe=sys4_exe)
    wanted = settings.only.split(",")
    rows: list[Row] = []
    failures: list[str] = []
    for name, run in scenarios.items():
        if name not in wanted:
            continue
        try:
            rows.append(run(qlen, root, settings, data))
        except BenchError as exc:
            print(f"[qlen {qlen}] {name}: FAILED: {exc}", flush=True)
            first = str(exc).splitlines()[0].rstrip(":")
            failures.append(f"qlen {qlen}: {name} FAILED: {first} (details above)")
    for line in ratios(rows):
        print(f"[qlen {qlen}] {line}", flush=True)
    return rows, failures


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
        default=ALL_SCENARIOS,
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
        qlen = int(args.qlen)
        return inner_pass(
            qlen,
            Path(args._data),
            Path(args._result),
            lambda root, data: run_pass(qlen, root, settings, data, args._sys4),
        )
    host_qlen = read_qlen()
    print(f"queue length (net.unix.max_dgram_qlen) of this machine: {host_qlen}")
    print("\n".join(machine_lines()))
    print(f"settings: {' '.join(settings.as_args())} (collector flush_interval {FLUSH_INTERVAL} s)")
    qlens = resolve_qlens(args.qlen, host_qlen)
    notes: list[str] = []
    sys4_exe: str | None = None
    if args.skip_sys4:
        notes.append("sys4 comparison skipped: --skip-sys4")
    else:
        sys4_exe, why = sys4.find_sys4(Path(args.sys4_venv))
        if sys4_exe is None:
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
                got, lines = run_pass(qlen, root, settings, data, sys4_exe)
            else:
                if not data_file.exists():
                    data.save(data_file)
                got, lines = run_namespaced(SCRIPT, qlen, root, settings, data_file, sys4=sys4_exe)
                if not got:
                    print("\n".join(lines), flush=True)
            rows += got
            notes += lines
    print_summary(rows, notes, host_qlen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
