"""What rendering the metrics costs: ``python benchmarks/metrics_render.py [--count N]``.

``collector``  the collector's metrics file as ``MetricsFile`` makes it at most once a second:
               the event loop copies the counters (``Counters.snapshot``), a worker thread
               renders the copy (``prometheus_client.generate_latest`` of a private registry).
               The datagrams themselves only add to plain integers, which this does not
               change. Reports microseconds per copy and per rendering.
``status``     ``status --format prometheus``'s families of a state database with ``--days``
               built days of ``--domains`` reports each (without reading the sources: that is
               a day's read of the collector database, measured by the report benchmarks).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from tlsrpt_collectd import metrics
from tlsrpt_reporter import exposition
from tlsrpt_reporter.cli import status_metrics
from tlsrpt_reporter.store import reports as state


def _per_call(fn: object, count: int) -> float:
    assert callable(fn)
    fn()  # warm
    started = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - started) / count


def collector(count: int) -> None:
    """The collector's rendering."""
    counters = metrics.Counters(started=time.time(), received=10**9, accepted=10**9 - 5)
    counters.rejected = {"not-json": 3, "oversize": 2}
    for seconds in (0.001, 0.02, 0.3):
        counters.flushed(seconds, time.time(), counters.received)
    copy = _per_call(counters.snapshot, count)
    render = _per_call(lambda: metrics.text(counters.snapshot(), 12345), count) - copy
    size = len(metrics.text(counters, 12345))
    print(f"collector: {copy * 1e6:8.1f} us per copy on the event loop, {render * 1e6:.1f} us "
          f"per rendering in the worker thread ({size} bytes), once a second at most")  # fmt: skip


def status(count: int, days: int, domains: int) -> None:
    """The state database's families."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = state.connect(Path(tmp) / "reporter.sqlite")
        for d in range(days):
            day = f"2026-{1 + d // 28:02d}-{1 + d % 28:02d}"
            rows = [
                {"domain": f"d{n}.example", "report_id": f"{day}-{n}", "message_id": f"<{n}@x>",
                 "date": "d", "filename": "f", "gzip": b"", "summary": "", "record": "",
                 "send_at": 0.0}
                for n in range(domains)
            ]  # fmt: skip
            state.insert_day(conn, day, 1000.0 + d, rows)
        seconds = _per_call(lambda: exposition.render(status_metrics.families(conn, 1e9)), count)
        conn.close()
    print(f"status:    {seconds * 1e3:8.2f} ms per rendering ({days} days of {domains} reports)")


def main() -> None:
    """Both measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="renderings timed (5000)")
    parser.add_argument("--days", type=int, default=60, help="built days for status (60)")
    parser.add_argument("--domains", type=int, default=500, help="reports a day (500)")
    args = parser.parse_args()
    collector(args.count)
    status(max(1, args.count // 100), args.days, args.domains)


if __name__ == "__main__":
    try:
        main()
    except sqlite3.Error as exc:
        raise SystemExit(f"metrics_render: {exc}") from None
