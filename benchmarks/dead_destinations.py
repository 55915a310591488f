"""What tracking dead destinations costs a pass: ``python benchmarks/dead_destinations.py
[--destinations N] [--days D]``.

A state database on disk (``store.suppressed``) gets ``--days`` days of one failed attempt to
each of ``--destinations`` destinations (the write every failed attempt adds, each its own
transaction as in the sender), then one pass checks every destination against the rule
(``deliver.suppression.Tracker.note_for``: the active suppression and the kept days, read by
primary key), which suppresses them all. Prints the time per recorded attempt, per check, and
the size of the kept history.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.deliver.suppression import Tracker
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store import suppressed


def main() -> None:
    """Run the measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--destinations", type=int, default=2000)
    parser.add_argument("--days", type=int, default=8)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # one suppression line per destination otherwise
    cfg = ReporterConfig()
    with tempfile.TemporaryDirectory() as tmp:
        conn = state.connect(Path(tmp) / "reporter.sqlite")
        first = "2026-03-01"
        days = [timing.day_end(first) + 86400 * i - 3600 for i in range(args.days)]
        started = time.perf_counter()
        for when in days:
            day = time.strftime("%Y-%m-%d", time.gmtime(when))
            for n in range(args.destinations):
                suppressed.record_outcome(conn, f"https://r{n}.example/tlsrpt", day,
                                          delivered=False, error="HTTP 500",
                                          keep=cfg.dead_after_days + 1)  # fmt: skip
        recorded = args.days * args.destinations
        per_attempt = (time.perf_counter() - started) / recorded
        kept = conn.execute("SELECT count(*) FROM destination_day").fetchone()[0]
        now = days[-1] + 7200
        tracker = Tracker(conn, cfg, lambda: now)
        started = time.perf_counter()
        dead = sum(
            1 for n in range(args.destinations) if tracker.note_for(f"https://r{n}.example/tlsrpt")
        )
        per_check = (time.perf_counter() - started) / args.destinations
        conn.close()
    print(f"{recorded} failed attempts recorded: {per_attempt * 1e6:.0f} us each")
    print(f"history kept: {kept} rows for {args.destinations} destinations")
    print(f"{args.destinations} destinations checked, {dead} suppressed: "
          f"{per_check * 1e6:.0f} us each")  # fmt: skip


if __name__ == "__main__":
    main()
