"""The collector's memory under large datagrams, and what a SIGKILL loses:
``python benchmarks/collector_memory.py [--quick]``.

``memory``   ``--hostile`` distinct valid datagrams of about ``--size`` bytes each (many
             failure details with long, distinct strings; half of them for 5 policy domains,
             so that the per-policy cap on failure details is reached, half for a domain each,
             so that the byte bound is), interleaved with ``--normal`` realistic
             datagrams (``samplegen``), sent with blocking sends (nothing is dropped at the
             sender, so everything sent must be stored). Reports the peak RSS (VmHWM) of the
             daemon and of its receive process and their sum, what was sent, accepted and
             stored, and whether the stored session counts add up to the accepted sessions.
``sigkill``  distinct small datagrams at ``--rate``/s; the daemon is SIGKILLed at a random
             moment, ``--kills`` times. The window is the kill time minus the send time of the
             oldest datagram that is not in the database: an upper bound of how long before
             the kill a lost datagram was received (a datagram is received after it is sent).

Each pass runs at one ``net.unix.max_dgram_qlen``: the machine's in this process, any other
(default 512) in a new network namespace (``unshare -n``, root only), through the ingest
benchmark's harness (``harness.namespace``). The exit code is 0 even when a target is missed;
look for "TARGET MISSED".
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from harness.collectors import OurCollector, drive, read_only
from harness.measure import machine_lines
from harness.model import BenchError, Data, Row, Settings
from harness.namespace import inner_pass, read_qlen, resolve_qlens, run_namespaced
from harness.output import mib, n, rss_text
from harness.senders import SenderGroup, blocking_worker

from tlsrpt_reporter.demo import samplegen
from tlsrpt_reporter.wire.encode import datagram

SCRIPT = Path(__file__).resolve()
TARGET_RSS_MIB = 300.0
HOSTILE_DOMAINS = 5  # the odd-numbered datagrams share these; the even ones have their own
FLUSH_INTERVAL = 1.0
DEFAULTS = {"hostile": 2000, "size": 200_000, "normal": 20_000, "rate": 2000, "kills": 5}
QUICK = {"hostile": 300, "size": 200_000, "normal": 3000, "rate": 2000, "kills": 2}


def hostile(index: int, size: int) -> bytes:
    """A valid datagram of about ``size`` bytes whose failure details are all distinct and
    carry long strings (each field near the 1,024-character cut)."""
    domain = f"h{index % HOSTILE_DOMAINS}.example" if index % 2 else f"d{index}.example"
    details = []
    used = 0
    k = 0
    while used < size - 2500:
        tag = f"{index}-{k}-"
        detail = {
            "c": 202,
            "s": f"192.0.2.{k % 250 + 1}",
            "r": f"198.51.100.{index % 250 + 1}",
            "n": f"mx{k}.{domain}",
            "f": tag + "x" * (1000 - len(tag)),
            "a": "https://example.net/" + tag + "y" * (990 - len(tag)),
        }
        details.append(detail)
        used += 2100
        k += 1
    policy = {"policy-type": 9, "policy-domain": domain, "failure-details": details}
    return datagram(domain, [policy | {"t": len(details), "f": 1}], "v=TLSRPTv1; rua=mailto:r@x")


# --- memory ---------------------------------------------------------------------------------


def _sessions(db: Path) -> tuple[int, int]:
    """(sessions stored in policy counts, the day counter 'sessions'): equal when no accepted
    session was lost."""
    with contextlib.closing(read_only(db)) as conn:
        stored = conn.execute(
            "SELECT COALESCE(SUM(successful_session_count + failed_session_count), 0) "
            "FROM policy_count"
        ).fetchone()[0]
        counted = conn.execute(
            "SELECT COALESCE(SUM(value), 0) FROM day_counter WHERE name = 'sessions'"
        ).fetchone()[0]
    return int(stored), int(counted)


def run_memory(qlen: int, root: Path, data: Data) -> Row:
    """The hostile mix against a fresh collector."""
    items = _interleave(data.distinct, data.blast)
    with OurCollector(root) as service:
        out = drive(service, SenderGroup(blocking_worker, [(service.socket_path, items)]), 1800)
        stored_sessions, counted_sessions = _sessions(service.db)
    total = sum(out.rss_kib.values())
    c = out.counters
    loss = out.sends.sent - out.stored
    text = (
        f"{n(len(data.distinct))} hostile datagrams of ~{n(len(data.distinct[0]))} bytes + "
        f"{n(len(data.blast))} normal, blocking sends: sent {n(out.sends.sent)}, accepted "
        f"{n(c.get('accepted', 0))}, stored {n(out.stored)}, loss {n(loss)}; dropped "
        f"backlog {n(c.get('dropped:backlog-full', 0))}, memory "
        f"{n(c.get('dropped:memory-full', 0))}; failure details capped "
        f"{n(c.get('failure-details-capped', 0))}; sessions stored {n(stored_sessions)} of "
        f"{n(counted_sessions)} accepted; {out.elapsed:.1f} s; peak RSS (VmHWM) "
        f"{rss_text(out.rss_kib)}"
    )
    print(f"[qlen {qlen}] memory: {text}", flush=True)
    where = f"(qlen {qlen})"
    if mib(total) >= TARGET_RSS_MIB:
        print(f"  TARGET MISSED {where}: peak RSS {mib(total):.1f} MiB, target < 300", flush=True)
    if loss or stored_sessions != counted_sessions or out.exit_code:
        print(
            f"  TARGET MISSED {where}: loss {n(loss)}, sessions {n(stored_sessions)} stored of "
            f"{n(counted_sessions)}, exit code {out.exit_code}; all must match",
            flush=True,
        )
    return Row(qlen, "memory", out.sends.sent, out.sends.dropped, out.stored, None, None,
               mib(total), note=f"sessions {stored_sessions}/{counted_sessions}")  # fmt: skip


def _interleave(hostile_items: list[bytes], normal: list[bytes]) -> list[bytes]:
    """Every hostile datagram among the normal ones, evenly spread."""
    out: list[bytes] = []
    step = max(1, len(normal) // max(1, len(hostile_items)))
    rest = iter(normal)
    for item in hostile_items:
        out.append(item)
        out += [x for _, x in zip(range(step), rest, strict=False)]
    out += list(rest)
    return out


# --- sigkill --------------------------------------------------------------------------------


def run_sigkill(qlen: int, root: Path, rate: int, kills: int) -> Row:
    """SIGKILL the daemon ``kills`` times while datagrams arrive; the longest loss window."""
    windows: list[float] = []
    rng = random.Random(7)
    sent_total = stored_total = 0
    for attempt in range(kills):
        with OurCollector(root) as service:
            sent_at, kill_at = _send_and_kill(service, rate, 2.0 + 2.0 * rng.random())
            stored = _stored_domains(service.db)
        missing = [i for i in range(len(sent_at)) if f"k{i}.example" not in stored]
        window = kill_at - sent_at[missing[0]] if missing else 0.0
        holes = sum(1 for i in missing if i < missing[-1] and f"k{i + 1}.example" in stored)
        print(
            f"[qlen {qlen}] sigkill {attempt + 1}: sent {n(len(sent_at))}, stored "
            f"{n(len(stored))}, lost {n(len(missing))} = the last {window:.3f} s before the kill"
            + (f" ({holes} gaps: NOT A SUFFIX)" if holes else ""),
            flush=True,
        )
        windows.append(window)
        sent_total += len(sent_at)
        stored_total += len(stored)
    worst = max(windows)
    print(
        f"[qlen {qlen}] sigkill: longest loss window {worst:.3f} s over {kills} kills "
        f"(flush_interval {FLUSH_INTERVAL} s)",
        flush=True,
    )
    return Row(qlen, "sigkill", sent_total, 0, stored_total, None, None, None,
               note=f"window {worst:.3f} s")  # fmt: skip


def _send_and_kill(service: OurCollector, rate: int, after: float) -> tuple[list[float], float]:
    """Send k0.example, k1.example, ... at ``rate``/s (blocking sends, in 1 ms steps) and
    SIGKILL the daemon ``after`` seconds; (each send's monotonic time, the kill's)."""
    sent_at: list[float] = []
    stop = threading.Event()

    def send() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5.0)
            started = time.monotonic()
            i = 0
            while not stop.is_set():
                due = int((time.monotonic() - started) * rate) + 1
                while i < due and not stop.is_set():
                    policy = {"policy-type": 9, "t": 0, "f": 0}
                    try:
                        sock.sendto(datagram(f"k{i}.example", [policy]), service.socket_path)
                    except OSError:
                        return  # the collector is gone
                    sent_at.append(time.monotonic())
                    i += 1
                time.sleep(0.001)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(after)
    assert service.proc is not None
    service.proc.send_signal(signal.SIGKILL)
    kill_at = time.monotonic()
    stop.set()
    sender.join()
    service.proc.wait()
    return sent_at[: _sent_before(sent_at, kill_at)], kill_at


def _sent_before(sent_at: list[float], when: float) -> int:
    return sum(1 for t in sent_at if t <= when)


def _stored_domains(db: Path) -> set[str]:
    try:
        with contextlib.closing(read_only(db)) as conn:
            return {d for (d,) in conn.execute("SELECT domain FROM policy_count")}
    except sqlite3.Error:
        return set()


# --- driver ---------------------------------------------------------------------------------


def run_pass(qlen: int, root: Path, data: Data, args: argparse.Namespace) -> list[Row]:
    """The scenarios at the queue length in force in this network namespace."""
    print(f"[qlen {qlen}] net.unix.max_dgram_qlen in use: {read_qlen()}", flush=True)
    rows = []
    for name in args.only.split(","):
        try:
            if name == "memory":
                rows.append(run_memory(qlen, root, data))
            elif name == "sigkill":
                rows.append(run_sigkill(qlen, root, args.rate, args.kills))
        except BenchError as exc:
            print(f"[qlen {qlen}] {name}: FAILED: {exc}", flush=True)
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The command line (the ingest harness's options are accepted for the namespaced pass)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hostile", type=int, help="large distinct datagrams (default 2000)")
    p.add_argument("--size", type=int, help="bytes of each (default 200000)")
    p.add_argument("--normal", type=int, help="realistic datagrams among them (default 20000)")
    p.add_argument("--rate", type=int, help="datagrams/s in the sigkill scenario (default 2000)")
    p.add_argument("--kills", type=int, help="SIGKILLs (default 5)")
    p.add_argument("--qlen", default="512,host", help="queue lengths (default 512,host)")
    p.add_argument("--only", default="memory,sigkill", help="scenarios (default both)")
    p.add_argument("--quick", action="store_true", help="300 hostile, 3000 normal, 2 kills")
    for hidden in ("--_data", "--_result", "--count", "--duration", "--memory-domains",
                   "--senders"):  # fmt: skip
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--_inner", action="store_true", help=argparse.SUPPRESS)
    return p


def _resolve(args: argparse.Namespace) -> None:
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # The harness passes these back to the namespaced pass as the ingest benchmark's options.
    args.settings = Settings(
        count=args.hostile, rate=args.rate, duration=float(args.kills),
        memory_domains=args.normal, senders=args.size, only=args.only,
    )  # fmt: skip


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 unless it could not run at all."""
    signal.signal(signal.SIGTERM, _terminate)
    args = build_parser().parse_args(argv)
    if args._inner:
        # Back from the harness: its option names carry this script's sizes.
        args.hostile, args.rate, args.kills = int(args.count), args.rate, int(float(args.duration))
        args.normal, args.size = int(args.memory_domains), int(args.senders)
    _resolve(args)
    if args._inner:
        qlen = int(args.qlen)
        return inner_pass(
            qlen, Path(args._data), Path(args._result),
            lambda root, data: (run_pass(qlen, root, data, args), []),
        )  # fmt: skip
    host_qlen = read_qlen()
    print(f"net.unix.max_dgram_qlen of this machine: {host_qlen}")
    print("\n".join(machine_lines()))
    print(
        f"settings: --hostile={args.hostile} --size={args.size} --normal={args.normal} "
        f"--rate={args.rate} --kills={args.kills} --only={args.only} (collector defaults, "
        f"flush_interval {FLUSH_INTERVAL} s)",
        flush=True,
    )
    data = Data(
        blast=list(samplegen.sessions(8460, 5000, args.normal)),
        distinct=[hostile(i, args.size) for i in range(args.hostile)],
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tlsrpt-bench-") as tmp:
        root = Path(tmp)
        data_file = root / "data.pickle"
        for qlen in resolve_qlens(args.qlen, host_qlen):
            print(f"\n=== queue length {qlen} ===", flush=True)
            if qlen == host_qlen:
                rows += run_pass(qlen, root, data, args)
                continue
            if not data_file.exists():
                data.save(data_file)
            got, lines = run_namespaced(SCRIPT, qlen, root, args.settings, data_file, sys4=None)
            rows += got
            if not got:
                print("\n".join(lines), flush=True)
    print("\nsummary:")
    for row in rows:
        rss = f", peak RSS {row.rss_mib:.1f} MiB" if row.rss_mib is not None else ""
        print(f"  qlen {row.qlen} {row.scenario}: sent {n(row.sent)}, stored {n(row.stored)}"
              f"{rss}, {row.note}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
