"""The collector's memory bounds under large datagrams, and what a SIGKILL keeps.

A smaller scale of benchmarks/collector_memory.py: large valid datagrams full of distinct,
long failure details among normal traffic. The bounds must hold every write's batch under
collectd.max_held_bytes and lose no accepted session; the peak RSS is the benchmark's to show.
"""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from support.collector import Collector, send_all
from support.datagrams import ok

from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire.encode import datagram

MakeCollector = Callable[..., Collector]
MIB = 1024 * 1024


def hostile(index: int, details: int = 45, domains: int = 3) -> bytes:
    """A valid datagram of ~100 KB: ``details`` distinct failure details of ~2 KB each."""
    domain = f"h{index % domains}.example"
    entries = [
        {
            "c": 202,
            "s": f"192.0.2.{k % 250 + 1}",
            "n": f"mx{k}.{domain}",
            "f": f"{index}-{k} " + "x" * 1000,
            "a": f"https://example.net/{index}-{k}/" + "y" * 980,
        }
        for k in range(details)
    ]
    policy = {"policy-type": 9, "failure-details": entries, "t": details, "f": 1}
    return datagram(domain, [policy], "v=TLSRPTv1; rua=mailto:r@example.net")


def stored_sessions(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return sum(
            line["summary"]["total-successful-session-count"]
            + line["summary"]["total-failure-session-count"]
            for day in store.days(conn)
            for line in store.iter_day(conn, day)
        )
    finally:
        conn.close()


def test_large_datagrams_are_written_early_in_batches_under_the_byte_bound_and_none_lost(
    make_collector: MakeCollector,
) -> None:
    c = make_collector(
        flush_interval=5.0,  # the early writes, not the interval, keep memory down
        max_held_bytes=8 * MIB,
        max_backlog_bytes=MIB,
        max_failure_details=60,
        log_level="debug",
    ).start()
    normal = [ok(f"n{i % 40}.example") for i in range(2400)]
    grams: list[bytes] = []
    for i in range(240):  # 24 MB of distinct failure details: three times the bound
        grams.append(hostile(i, domains=240))
        grams += normal[i * 10 : i * 10 + 10]
    # 450 distinct details for one policy, in one or two writes: the cap leaves some out.
    grams += [hostile(i, domains=1) for i in range(100, 110)]
    send_all(c.socket, grams, timeout=120)
    c.wait_for_counter("accepted", len(grams), timeout=120)
    assert c.stop() == 0
    counters = c.counters()
    assert counters["accepted"] == counters["received"] == len(grams)
    assert "dropped:memory-full" not in counters
    assert stored_sessions(c.db) == counters["sessions"] == len(grams), "no session lost"
    assert counters["failure-details"] == 250 * 45
    assert counters["failure-details-capped"] >= 450 - 2 * 60
    held = [int(b) for b in re.findall(r"flushed \d+ keys \(~(\d+) bytes\)", c.log())]
    assert len(held) >= 3, "the byte bound asked for writes before the 5 s interval"
    assert max(held) < 8 * MIB
    assert "failure details left out" in c.log()


def test_a_tiny_receive_backlog_pauses_reading_and_drops_nothing(
    make_collector: MakeCollector,
) -> None:
    c = make_collector(max_backlog_bytes=MIB).start()
    grams = [hostile(i, details=40, domains=60) for i in range(60)]  # ~5 MB, distinct
    send_all(c.socket, grams, timeout=120)
    c.wait_for_counter("accepted", len(grams), timeout=120)
    assert c.stop() == 0
    assert c.counters()["accepted"] == len(grams)


def test_sigkill_keeps_everything_the_metrics_called_written(
    make_collector: MakeCollector, shared_dir: Path
) -> None:
    """docs/operating.md "What a crash loses": a SIGKILL loses only what arrived since the start
    of the last completed write (the metrics' datagrams_waiting), never anything before."""
    prom = shared_dir / "collectd.prom"
    c = make_collector(flush_interval=0.2, metrics_file=prom).start()
    first = [ok(f"a{i}.example") for i in range(500)]
    send_all(c.socket, first)
    stop = threading.Event()

    def keep_sending() -> None:
        # Traffic after the first 500, so that writes go on while the test waits.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            i = 0
            while not stop.is_set():
                try:
                    sock.sendto(ok(f"b{i}.example"), socket.MSG_DONTWAIT, str(c.socket))
                    i += 1
                except BlockingIOError:
                    pass
                except OSError:
                    return  # the collector is gone
                time.sleep(0.0005)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        written = _wait_for_written(prom, len(first) + 200)
        assert c.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        stop.set()
        sender.join(30)
    domains = {line["domain"] for line in c.export()}
    assert {f"a{i}.example" for i in range(500)} <= domains
    # Whatever the metrics file called written before the kill is there: the first 500 and at
    # least as many of the later ones as it counted.
    assert len(domains) >= written
    conn = sqlite3.connect(c.db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def _wait_for_written(prom: Path, at_least: int, timeout: float = 60.0) -> int:
    """Datagrams the metrics file calls written (received - waiting), once >= ``at_least``."""
    deadline = time.monotonic() + timeout
    while True:
        text = prom.read_text() if prom.exists() else ""
        values = dict(re.findall(r"^(tlsrpt_collectd_\w+) (\S+)$", text, re.MULTILINE))
        received = float(values.get("tlsrpt_collectd_received_total", 0))
        waiting = float(values.get("tlsrpt_collectd_datagrams_waiting", 0))
        if received - waiting >= at_least:
            return int(received - waiting)
        assert time.monotonic() < deadline, f"written stayed below {at_least}:\n{text}"
        time.sleep(0.1)
