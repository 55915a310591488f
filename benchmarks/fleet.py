"""Fleet benchmark (issue 16): MTA hosts pushing to PostgreSQL, two reporters sharing its state.

    python benchmarks/fleet.py [--domains 100000] [--report-domains 10000] [--hosts 3]
                               [--only push|reporters] [--lanes 4]

``push``: a throwaway PostgreSQL cluster set up as docs/fleet.md says, one collector database
per host holding one day of ``--domains`` domains (written by the collector's own code), then
``tlsrpt-reporter push`` per host, timed, and again unchanged; beside it the collector's own
SQLite write of the day, and the reporter's read of the merged day from PostgreSQL against its
read of one SQLite file holding every host's sessions.

``reporters``: ``--report-domains`` domains whose sessions the hosts share, pushed; every
domain's record in the loopback DNS server, the SMTP and HTTPS sinks of ``deliver.py``; two
``send --now`` on one PostgreSQL state database, reading the fleet: started at once, then (on a
fresh state database) the second once the first has built the day, so that both deliver.
Exactly one must build the day, every report must reach the sinks once and be ``delivered``.
Then the SQLite baseline: one reporter, the same day from one SQLite file, its state in SQLite.
``CHECK FAILED`` lines and exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "fleet")]

from deliver import MAIL_DOMAIN, WEB_DOMAIN  # noqa: E402
from harness.measure import machine_lines  # noqa: E402
from harness.pgfleet import Collected, FleetCluster, Pushed, Share, collect, host_names, push  # noqa: E402
from harness.rounds import Round, built_after, check_round, deliver_round, print_round, sent_by  # noqa: E402
from rigs.postgres import SUPERUSER  # noqa: E402

from tlsrpt_reporter import utc  # noqa: E402
from tlsrpt_reporter.report import sources  # noqa: E402

# Two days ago: ended long enough ago that every push marks it complete, and still inside the
# push window (today and push.days = 3 days back).
DAY = utc.day(time.time() - 2 * 86400)
PYTHON = sys.executable


def domain_names(count: int) -> list[str]:
    """The domains of ``deliver.plan``'s records, in its order."""
    return [f"d{i:06d}.example" for i in range(count)]


def every_host(i: int, h: int) -> tuple[int, int]:
    """Push part: every host sends to every domain, two sessions, and one failed session in
    ten (on a different host for each domain)."""
    return 2, int((i + h) % 10 == 0)


def rows_per_s(rows: int, seconds: float) -> str:
    """``rows`` per second, readable."""
    return f"{rows / max(seconds, 1e-9):,.0f}"


def digest(lines: Sequence[dict[str, Any]]) -> str:
    """The same for the same lines in any order."""
    blob = "\n".join(sorted(json.dumps(line, sort_keys=True) for line in lines))
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


def part_push(pg: FleetCluster, tmp: Path, domains: int) -> list[str]:
    """Push ``domains`` domains from every host, then unchanged; the read of the day from
    PostgreSQL against SQLite. Returns the failed checks."""
    print(f"\n=== push: {len(pg.hosts)} hosts x {domains:,} domains, day {DAY} ===")
    fleet = pg.new_fleet("fleet_push")
    started = time.perf_counter()
    day = collect(tmp, DAY, domain_names(domains), pg.hosts, every_host)
    print(
        f"generated {day.sessions:,} sessions in {time.perf_counter() - started:.1f} s "
        "(not part of the figures)"
    )
    configs = pg.push_configs(tmp, "fleet_push", day.hosts)
    problems: list[str] = []
    first: dict[str, Pushed] = {}
    for label in ("first push", "again, unchanged"):
        print(f"{label}:")
        for host, config in configs.items():
            done = push(PYTHON, config, tmp / f"push-{host}.out")
            if done.run.code != 0:
                tail = " | ".join(line for _, line in done.run.err[-3:])
                problems.append(f"push of {host} exited {done.run.code}: {tail}")
                continue
            print(
                f"  {host}: {done.rows:,} rows written in {done.run.wall:.2f} s = "
                f"{rows_per_s(done.rows, done.run.wall)} rows/s (days: "
                f"{', '.join(done.outcomes)}); CPU {done.run.cpu:.2f} s, peak RSS "
                f"{done.run.rss_mib:.0f} MiB"
            )
            if host not in first:
                first[host] = done
                continue
            if set(done.outcomes) != {"unchanged"}:
                problems.append(f"the repeated push of {host} was {done.outcomes}, not unchanged")
            # The unchanged push does all but the writing (start-up, reading and hashing the
            # collector's days, connecting): the difference is what the rows cost.
            rows, extra = first[host].rows, first[host].run.wall - done.run.wall
            cost = (
                f"{extra:.2f} s = {rows_per_s(rows, extra)} rows/s"
                if extra > 0
                else "lost in the noise"
            )
            print(
                f"    writing the rows: {cost}; SQLite: "
                f"the collector's write of the day {day.write_seconds[host]:.2f} s = "
                f"{rows_per_s(rows, day.write_seconds[host])} rows/s"
            )
    return problems + compare_reads(fleet, day)


def compare_reads(fleet: str, day: Collected) -> list[str]:
    """The reporter's read of the day (``sources.read_day``): the fleet from PostgreSQL, summed
    across hosts, and one SQLite file that saw every session."""
    print("the reporter's read of the merged day (sources.read_day):")
    found = {}
    for label, source in (
        ("PostgreSQL (fleet, summed in SQL)", fleet),
        ("SQLite (one collector that saw everything)", str(day.merged)),
    ):
        started = time.perf_counter()
        data = sources.read_day([source], DAY)
        took = time.perf_counter() - started
        found[label] = (len(data.lines), digest(data.lines), data.failed_sources)
        print(
            f"  {label}: {len(data.lines):,} lines in {took:.2f} s = "
            f"{rows_per_s(len(data.lines), took)} lines/s"
        )
        del data
    print(f"  (SQLite's write of that merged day: {day.merged_seconds:.2f} s)")
    (pg_lines, pg_digest, failed), (lite_lines, lite_digest, _) = found.values()
    if failed or (pg_lines, pg_digest) != (lite_lines, lite_digest):
        return [
            f"the fleet's day ({pg_lines:,} lines, {pg_digest}, failed: {failed}) is not "
            f"the merged SQLite day ({lite_lines:,} lines, {lite_digest})"
        ]
    print(f"  the same lines from both (digest {pg_digest})")
    return []


def sessions_shared(hosts: int) -> Share:
    """Reporters part: each domain's two sessions on two hosts (a third of the sessions per
    host, domains overlapping), one in ten failed."""

    def share(i: int, h: int) -> tuple[int, int]:
        on = h in (i % hosts, (i + 1) % hosts)
        failed = on and h == i % hosts and i % 10 == 0
        return int(on and not failed), int(failed)

    return share


def part_reporters(pg: FleetCluster, tmp: Path, domains: int, lanes: int) -> list[str]:
    """Two reporters on PostgreSQL (the fleet as source, state shared), started at once, then
    the second after the first built the day; one reporter on SQLite (source and state)."""
    print(
        f"\n=== reporters: {domains:,} domains, sessions spread over {len(pg.hosts)} hosts, "
        f"day {DAY} ==="
    )
    fleet = pg.new_fleet("fleet_reporters")
    started = time.perf_counter()
    day = collect(tmp, DAY, domain_names(domains), pg.hosts, sessions_shared(len(pg.hosts)))
    problems = []
    for host, config in pg.push_configs(tmp, "fleet_reporters", day.hosts).items():
        done = push(PYTHON, config, tmp / f"push-{host}.out")
        if done.run.code != 0:
            problems.append(f"push of {host} exited {done.run.code}: {done.run.err[-3:]}")
    if problems:
        return problems
    print(
        f"generated {day.sessions:,} sessions (rua on {MAIL_DOMAIN} and {WEB_DOMAIN}) and "
        f"pushed them in {time.perf_counter() - started:.1f} s (not part of the figures)"
    )
    hosts = ", ".join(f'"{host}"' for host in pg.hosts)
    rounds: list[Round] = []

    def run(label: str, name: str, reporter: str, db: str, **how: Any) -> None:
        p, r = deliver_round(label, tmp / name, domains, reporter, db, lanes=lanes, **how)
        print_round(p, r)
        problems.extend(check_round(p, r, lanes))
        rounds.append(r)

    for label, stagger in (("two at once, PostgreSQL", False),
                           ("two, the second after the build", True)):  # fmt: skip
        name = "state_staggered" if stagger else "state_at_once"
        pg.cluster.create_database(name)
        url = pg.cluster.url(name, SUPERUSER)
        shared = f'sources = ["{fleet}"]\nexpected_hosts = [{hosts}]\ndb = "{url}"\n'
        run(label, name, shared, url, processes=2, stagger=stagger)
    lite_db = tmp / "sqlite" / "reporter.sqlite"
    lite = f'sources = ["{day.merged}"]\ndb = "{lite_db}"\n'
    run("one, SQLite", "sqlite", lite, str(lite_db), processes=1)
    print_table(domains, rounds)
    return problems


def print_table(n: int, rounds: Sequence[Round]) -> None:
    """The rounds side by side."""
    print(f"\n{'':31}" + "".join(f"{r.label:>34}" for r in rounds))
    built = [built_after(r) for r in rounds]
    after = zip(rounds, built, strict=True)
    for label, cells in (
        ("day built after (s)", [f"{b:.1f}" for b in built]),
        ("all delivered, all exited (s)", [f"{r.wall:.1f}" for r in rounds]),
        ("delivering after the build (s)", [f"{r.wall - b:.1f}" for r, b in after]),
        (
            "deliveries sent by each",
            ["+".join(str(sent_by(run)) for run in r.runs) for r in rounds],
        ),
        ("reports/s", [f"{n / r.wall:,.1f}" for r in rounds]),
    ):
        print(f"{label:31}" + "".join(f"{cell:>34}" for cell in cells))


def main() -> int:
    """Parse the options, run the parts, print; 1 when a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=100_000, help="domains per host (push)")
    parser.add_argument(
        "--report-domains", type=int, default=10_000, help="domains of the reporters' day"
    )
    parser.add_argument("--hosts", type=int, default=3, help="MTA hosts pushing")
    parser.add_argument("--only", choices=("push", "reporters"), help="run one part")
    parser.add_argument("--lanes", type=int, default=4, help="reporter.delivery_lanes")
    args = parser.parse_args()
    print("\n".join(machine_lines()))
    pg = FleetCluster(host_names(args.hosts))
    problems = []
    try:
        print(
            f"PostgreSQL {pg.cluster.version}: a throwaway cluster on a Unix socket, "
            f"{pg.settings()}"
        )
        with tempfile.TemporaryDirectory(prefix="tlsrpt-fleet-bench-") as name:
            if args.only in (None, "push"):
                (Path(name) / "push").mkdir()
                problems += part_push(pg, Path(name) / "push", args.domains)
            if args.only in (None, "reporters"):
                (Path(name) / "reporters").mkdir()
                problems += part_reporters(
                    pg, Path(name) / "reporters", args.report_domains, args.lanes
                )
    finally:
        pg.remove()
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    if not problems:
        print("checks passed")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
