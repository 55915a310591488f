"""Delivery benchmark: ``send --now`` of a day's reports to a local SMTP relay and HTTPS sink.

    python benchmarks/deliver.py [--reports 100000] [--lanes 4] [--domains-per-host 20]
                                 [--per-host-cap 2] [--deadline 300] [--profile]
                                 [--profile-out FILE]

Builds one report per domain (``--reports`` domains) with the project's own build, publishes
each domain's ``_smtp._tls`` record in the loopback DNS server (half ``mailto:`` through the
relay, half ``https:``, ``--domains-per-host`` domains per rua host; one record in five lists
three rua on its host, of which ``reporter.max_destinations_per_host`` lets through
``--per-host-cap``), then times ``tlsrpt-reporter send --now`` in a process of its own while the
sinks count every delivery and the connections they have open at once. Prints reports/s, the
peak open connections (in all, per sink, per rua host), and checks the state database and the
sinks against each other: every report delivered, nothing lost, nothing sent twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pstats
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.measure import machine_lines  # noqa: E402
from harness.sinks import Gauge, HttpsSink, SmtpSink, Tally, ZoneServer  # noqa: E402
from support.site import dkim_key, loopback_delivery, session  # noqa: E402

from tlsrpt_reporter.config.load import load as load_config  # noqa: E402
from tlsrpt_reporter.schedule.build import build_due  # noqa: E402
from tlsrpt_reporter.schedule.timing import day_end  # noqa: E402
from tlsrpt_reporter.store import collected as store  # noqa: E402
from tlsrpt_reporter.store import reports as state  # noqa: E402
from tlsrpt_reporter.wire.aggregate import Aggregate  # noqa: E402
from tlsrpt_reporter.wire.decode import decode  # noqa: E402

SUBMITTER = "bench.example"
MAIL_DOMAIN = "mail.test"  # the rua hosts of mailto: records, h00000.mail.test ...
WEB_DOMAIN = "web.test"  # the rua hosts of https: records
MANY_RUA = 3  # rua on one host in every fifth record


@dataclass(frozen=True)
class Plan:
    """The generated world: each domain's record, and the deliveries it must come to."""

    day: str
    records: dict[str, str]  # domain -> its TLSRPT record
    hosts: int
    expected_sent: int
    expected_skipped: int


def plan(reports: int, per_host: int, cap: int, web_port: int) -> Plan:
    """Records for ``reports`` domains: even ones mailto:, odd ones https:, ``per_host``
    domains of a kind per rua host."""
    records: dict[str, str] = {}
    sent = skipped = 0
    for i in range(reports):
        domain = f"d{i:06d}.example"
        host_no = (i // 2) // per_host
        many = i % 10 in (0, 1)
        tags = "abc"[: MANY_RUA if many else 1]
        if i % 2 == 0:
            host = f"h{host_no:05d}.{MAIL_DOMAIN}"
            uris = [f"mailto:{tag}-{domain}@{host}" for tag in tags]
        else:
            host = f"h{host_no:05d}.{WEB_DOMAIN}"
            uris = [f"https://{host}:{web_port}/v1/{tag}/{domain}" for tag in tags]
        records[domain] = "v=TLSRPTv1; rua=" + ",".join(uris)
        sent += min(len(uris), cap)
        skipped += len(uris) - min(len(uris), cap)
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    hosts = 2 * ((reports // 2 - 1) // per_host + 1)
    return Plan(yesterday, records, hosts, sent, skipped)


def zone(p: Plan) -> dict[str, list[tuple[str, str]]]:
    """The DNS zone: every domain's record (in 200-byte strings), every https host's A."""
    entries: dict[str, list[tuple[str, str]]] = {}
    for domain, record in p.records.items():
        parts = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
        entries[f"_smtp._tls.{domain}"] = [("TXT", parts)]
    for host_no in range(p.hosts // 2):
        entries[f"h{host_no:05d}.{WEB_DOMAIN}"] = [("A", "127.0.0.1")]
    return entries


def collect(db: Path, p: Plan) -> None:
    """The collector's database: one session per domain, the record left to DNS."""
    agg = Aggregate()
    stamp = day_end(p.day) - 3600
    for domain in p.records:
        agg.add(p.day, stamp, decode(session(domain, None)))
    conn = store.connect(db)
    store.write(conn, store.build_batch(agg))
    conn.close()


def config(
    tmp: Path, args: argparse.Namespace, relay_port: int, ca_file: Path, dns_port: int
) -> Path:
    """The reporter's configuration: loopback relay, HTTPS and DNS, the limits under test."""
    pem, record = dkim_key(tmp, SUBMITTER)
    path = tmp / "config.toml"
    path.write_text(
        f"""
[collectd]
db = "{tmp}/collectd.sqlite"
socket = "{tmp}/collectd.sock"
[reporter]
organization_name = "Bench Mail"
contact_info = "tlsrpt@{SUBMITTER}"
db = "{tmp}/reporter.sqlite"
grace = 0
spread = 0
delivery_lanes = {args.lanes}
max_destinations_per_host = {args.per_host_cap}
attempt_deadline = {args.deadline}
"""
        + loopback_delivery(
            submitter=SUBMITTER,
            relay_port=relay_port,
            key=pem,
            record=record,
            ca_file=ca_file,
            https_timeout=30,
            dns_port=dns_port,
            dns_timeout=5,
        )
    )
    return path


@dataclass(frozen=True)
class SendRun:
    """The ``send --now`` process: wall and CPU seconds, peak RSS, exit code, its output."""

    wall: float
    cpu: float
    rss_mib: float
    code: int
    out: str
    errors: list[str]


@dataclass(frozen=True)
class Stored:
    """The state database after the pass: reports by status, deliveries by state, sent
    deliveries that took more than one attempt, the (Report-ID, destination) pairs sent."""

    statuses: dict[str, int]
    states: dict[str, int]
    retried: int
    sent: set[tuple[str, str]]


@dataclass(frozen=True)
class Sinks:
    """What the sinks counted, and their CPU seconds (with the DNS server's) during the pass."""

    tally: Tally
    total: Gauge
    smtp: Gauge
    web: Gauge
    cpu: float = 0.0


def send(cfg: Path, tmp: Path, tally: Tally, profile: Path | None) -> SendRun:
    """Run ``send --now`` in a process of its own (under cProfile into ``profile``)."""
    cmd = [sys.executable]
    if profile is not None:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "tlsrpt_reporter.cli", "send", "--now", "--config", str(cfg)]
    with (tmp / "send.out").open("w") as out, (tmp / "send.err").open("w") as err:
        start = time.perf_counter()
        tally.started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        # wait4: this child's own rusage.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    return SendRun(
        wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
        os.waitstatus_to_exitcode(status), (tmp / "send.out").read_text().strip(),
        (tmp / "send.err").read_text().splitlines(),
    )  # fmt: skip


def stored(db: Path) -> Stored:
    """Read the outcome of the pass from the state database."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    statuses = dict(conn.execute("SELECT status, count(*) FROM report GROUP BY status").fetchall())
    states = dict(conn.execute("SELECT state, count(*) FROM delivery GROUP BY state").fetchall())
    retried = conn.execute(
        "SELECT count(*) FROM delivery WHERE state = 'sent' AND attempts != 1"
    ).fetchone()[0]
    sent = set(conn.execute(
        "SELECT report.report_id, delivery.destination FROM delivery"
        " JOIN report ON report.id = delivery.report WHERE delivery.state = 'sent'"
    ).fetchall())  # fmt: skip
    conn.close()
    return Stored(statuses, states, retried, sent)


def print_profile(path: Path, top: int = 25) -> None:
    """The functions of the send process that took the most time, own and cumulative."""
    stats = pstats.Stats(str(path))
    for key in ("tottime", "cumulative"):
        print(f"--- send --now profile, top {top} by {key}")
        stats.sort_stats(key).print_stats(top)


def run(args: argparse.Namespace) -> int:
    """Set up, send, count, check; 1 when a check failed."""
    total = Gauge()
    sinks = Sinks(Tally(), total, Gauge(total), Gauge(total))
    with tempfile.TemporaryDirectory(prefix="tlsrpt-deliver-bench-") as name:
        tmp = Path(name)
        with (
            SmtpSink(sinks.tally, sinks.smtp) as smtp,
            HttpsSink(tmp, WEB_DOMAIN, sinks.tally, sinks.web) as web,
        ):
            p = plan(args.reports, args.domains_per_host, args.per_host_cap, web.port)
            started = time.perf_counter()
            with ZoneServer(zone(p)) as dns:
                cfg = config(tmp, args, smtp.port, web.ca_file, dns.port)
                collect(tmp / "collectd.sqlite", p)
                conn = state.connect(tmp / "reporter.sqlite")
                now = day_end(p.day) + 60  # the day has just finished
                built = build_due(load_config(cfg).reporter, conn, now, random.Random(7))
                conn.close()
                n = sum(r.reports for r in built)
                took = time.perf_counter() - started
                print(f"set up {n:,} reports for {len(p.records):,} domains on {p.hosts:,} "
                      f"rua hosts in {took:.1f} s (not part of the figures)")  # fmt: skip
                print(f"send --now: delivery_lanes = {args.lanes}, max_destinations_per_host = "
                      f"{args.per_host_cap}, attempt_deadline = {args.deadline:g}")  # fmt: skip
                before = resource.getrusage(resource.RUSAGE_SELF)
                profile = tmp / "send.prof" if args.profile else None
                pass_ = send(cfg, tmp, sinks.tally, profile)
                after = resource.getrusage(resource.RUSAGE_SELF)
                if profile is not None:
                    print_profile(profile)
                    if args.profile_out:
                        shutil.copyfile(profile, args.profile_out)
            db = stored(tmp / "reporter.sqlite")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    sinks = dataclasses.replace(sinks, cpu=cpu)
    print_figures(args.lanes, n, sinks, pass_, db)
    problems = checks(args, p, n, sinks, db)
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    if problems and pass_.errors:
        print("send --now said (last lines):\n  " + "\n  ".join(pass_.errors[-5:]))
    if not problems:
        print(f"check passed: all {n:,} reports delivered ({len(db.sent):,} deliveries, "
              f"{p.expected_skipped:,} skipped by the per-host cap), nothing lost, nothing "
              "sent twice, the connection limits held")  # fmt: skip
    return 1 if problems else 0


def print_figures(lanes: int, n: int, sinks: Sinks, pass_: SendRun, db: Stored) -> None:
    """Rates, timing, CPU, connections, and what the sinks and the database hold."""
    tally, got = sinks.tally, sinks.tally.deliveries
    window = max(tally.last - tally.first, 1e-9)
    first_line = pass_.out.splitlines()[0] if pass_.out else ""
    print(f"send --now exited {pass_.code} after {pass_.wall:.1f} s: {first_line}")
    print(f"  {n / pass_.wall:,.1f} reports/s, {got / pass_.wall:,.1f} deliveries/s "
          f"({got:,} deliveries: {tally.by_kind['mailto']:,} mail, "
          f"{tally.by_kind['https']:,} HTTPS)")  # fmt: skip
    print(f"  the first delivery arrived {tally.first - tally.started:.1f} s after the start "
          "(start-up, DKIM self-check, resolving every report), the last "
          f"{tally.last - tally.first:.1f} s after the first: "
          f"{got / window:,.1f} deliveries/s")  # fmt: skip
    print(f"  CPU: send process {pass_.cpu:.1f} s ({pass_.cpu / max(n, 1) * 1000:.1f} ms a "
          f"report), sinks and DNS {sinks.cpu:.1f} s; "
          f"send peak RSS {pass_.rss_mib:.0f} MiB")  # fmt: skip
    print(f"  peak open connections: {sinks.total.peak} in all ({sinks.smtp.peak} SMTP, "
          f"{sinks.web.peak} HTTPS; {lanes} lanes), at most {sinks.total.host_peak} "
          f"to one rua host ({sinks.total.busiest})")  # fmt: skip
    distinct_ids = len({rid for rid, _ in tally.seen})
    duplicates = sum(c - 1 for c in tally.seen.values() if c > 1)
    print(f"at the sinks: {got:,} deliveries, {len(tally.seen):,} distinct (Report-ID, "
          f"destination), {distinct_ids:,} distinct Report-IDs, {duplicates} duplicates, "
          f"{tally.unreadable} without a readable Report-ID")  # fmt: skip
    print(f"in the state database: reports {db.statuses}; deliveries {db.states}; "
          f"{db.retried} sent after more than one attempt")  # fmt: skip


def checks(args: argparse.Namespace, p: Plan, n: int, sinks: Sinks, db: Stored) -> list[str]:
    """What went wrong: reports missing or lost, sent twice, or limits exceeded."""
    tally, got = sinks.tally, sinks.tally.deliveries
    distinct_ids = len({rid for rid, _ in tally.seen})
    duplicates = sum(c - 1 for c in tally.seen.values() if c > 1)
    lost, unknown = db.sent - set(tally.seen), set(tally.seen) - db.sent
    skipped = db.states.get("skipped", 0)
    problems = []
    if n != args.reports or distinct_ids != n:
        problems.append(f"{n:,} reports built, {distinct_ids:,} Report-IDs received, "
                        f"{args.reports:,} wanted")  # fmt: skip
    if db.statuses.get("delivered", 0) != n:
        problems.append(f"{n - db.statuses.get('delivered', 0):,} reports not delivered")
    if len(db.sent) != p.expected_sent or skipped != p.expected_skipped:
        problems.append(f"{len(db.sent):,} sent and {skipped:,} skipped in the database, "
                        f"{p.expected_sent:,} and {p.expected_skipped:,} expected")  # fmt: skip
    if lost or unknown:
        problems.append(f"{len(lost)} sent in the database but not received; {len(unknown)} "
                        "received but not recorded as sent")  # fmt: skip
    if duplicates or tally.unreadable or db.retried or got != len(db.sent):
        problems.append(f"{duplicates} duplicates, {tally.unreadable} unreadable, {db.retried} "
                        f"retried, {got:,} received for {len(db.sent):,} sent")  # fmt: skip
    if sinks.total.peak > args.lanes or sinks.total.host_peak > 1:
        problems.append(f"{sinks.total.peak} connections at once (limit {args.lanes}), "
                        f"{sinks.total.host_peak} to one host (limit 1)")  # fmt: skip
    return problems


def main() -> int:
    """Parse the options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--lanes", type=int, default=4, help="reporter.delivery_lanes")
    parser.add_argument("--domains-per-host", type=int, default=20,
                        help="domains whose rua share one host")  # fmt: skip
    parser.add_argument("--per-host-cap", type=int, default=2,
                        help="reporter.max_destinations_per_host")  # fmt: skip
    parser.add_argument("--deadline", type=float, default=300.0, help="reporter.attempt_deadline")
    parser.add_argument("--profile", action="store_true", help="run send under cProfile")
    parser.add_argument("--profile-out", metavar="FILE", default="",
                        help="with --profile: keep its data in FILE (for pstats)")  # fmt: skip
    args = parser.parse_args()
    print("\n".join(machine_lines()))
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
