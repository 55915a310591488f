"""Rounds of reporters for ``fleet.py``: ``send --now`` processes on one configuration against
fresh sinks of ``deliver.py`` (``harness.sinks``), and what each round did and broke.

A round starts its reporters at once, or the second when the first has built the day (so that
both deliver: at once, the one that does not build finds nothing stored yet and is done).
The checks: exactly one reporter built the day, every report ``delivered`` in the state
database, each sent (Report-ID, destination) received exactly once and nothing else received,
the skipped count ``deliver.plan`` implies, no delivery attempted twice, and at most
``delivery_lanes`` connections at once and one per rua host, per reporter. ``deliver`` (the
benchmark script) and ``tests`` must be importable.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deliver import WEB_DOMAIN, Plan, plan, zone
from support.site import dkim_key, loopback_delivery

from harness.pgfleet import Command, Finished
from harness.sinks import Gauge, HttpsSink, SmtpSink, Tally, ZoneServer
from tlsrpt_reporter.store import reports as state

SUBMITTER = "bench.example"
BUILT = r"built \d+ reports for "  # the builder's log line (schedule.build)
WAITED = "is being built by"  # the other's


@dataclass(frozen=True)
class Round:
    """One round: its reporters' processes (and when each started, from the round's start),
    the sinks' count, and the state database afterwards."""

    label: str
    runs: list[Finished]
    offsets: list[float]
    wall: float
    tally: Tally
    total: Gauge
    statuses: dict[str, int]
    states: dict[str, int]
    sent: set[tuple[str, str]]


def reporter_config(
    path: Path, reporter: str, *, lanes: int, relay: int, ca: Path, dns: int
) -> Path:
    """A reporter's configuration: ``reporter`` (its sources and state), the loopback sinks."""
    pem, record = dkim_key(path.parent, SUBMITTER)
    path.write_text(
        f'[reporter]\norganization_name = "Bench Mail"\ncontact_info = "tlsrpt@{SUBMITTER}"\n'
        f"grace = 0\nspread = 0\ndelivery_lanes = {lanes}\nmax_destinations_per_host = 2\n"
        f"{reporter}"
        + loopback_delivery(
            submitter=SUBMITTER,
            relay_port=relay,
            key=pem,
            record=record,
            ca_file=ca,
            https_timeout=30,
            dns_port=dns,
            dns_timeout=5,
        )
    )
    return path


def deliver_round(
    label: str,
    tmp: Path,
    domains: int,
    reporter: str,
    db: str,
    *,
    processes: int,
    lanes: int,
    stagger: bool = False,
) -> tuple[Plan, Round]:
    """Run ``processes`` ``send --now`` on one configuration, at once (``stagger``: each after
    the first has built the day), with fresh sinks; then read the state database ``db``."""
    tmp.mkdir()
    tally, total = Tally(), Gauge()
    with (
        SmtpSink(tally, Gauge(total)) as smtp,
        HttpsSink(tmp, WEB_DOMAIN, tally, Gauge(total)) as web,
    ):
        p = plan(domains, 20, 2, web.port)
        with ZoneServer(zone(p)) as dns:
            cfg = reporter_config(
                tmp / "config.toml",
                reporter,
                lanes=lanes,
                relay=smtp.port,
                ca=web.ca_file,
                dns=dns.port,
            )
            argv = [
                sys.executable,
                "-m",
                "tlsrpt_reporter.cli",
                "send",
                "--now",
                "--config",
                str(cfg),
            ]
            started = time.perf_counter()
            tally.started = time.monotonic()
            commands = [Command(argv, tmp / "send-1.out")]
            if stagger:
                commands[0].wait_for(BUILT)
            commands += [Command(argv, tmp / f"send-{n}.out") for n in range(2, processes + 1)]
            runs = [command.wait() for command in commands]
            wall = time.perf_counter() - started
    conn = state.connect(db)
    statuses = dict(conn.execute("SELECT status, count(*) FROM report GROUP BY status").fetchall())
    states = dict(conn.execute("SELECT state, count(*) FROM delivery GROUP BY state").fetchall())
    sent = set(
        conn.execute(
            "SELECT report.report_id, delivery.destination FROM delivery"
            " JOIN report ON report.id = delivery.report WHERE delivery.state = 'sent'"
        ).fetchall()
    )
    conn.close()
    offsets = [command.started - started for command in commands]
    return p, Round(label, runs, offsets, wall, tally, total, statuses, states, sent)


def sent_by(run: Finished) -> int:
    """The deliveries a ``send`` says it sent (``attempted N deliveries: S sent, ...``)."""
    _, found, rest = run.out.partition("deliveries: ")
    return int(rest.split()[0]) if found else 0


def built_after(r: Round) -> float:
    """When the day was built, in seconds from the round's start (NaN: by nobody)."""
    return next(
        (
            off + hit[0]
            for off, run in zip(r.offsets, r.runs, strict=True)
            if (hit := run.first(BUILT))
        ),
        float("nan"),
    )


def print_round(p: Plan, r: Round) -> None:
    """One round's figures: each reporter, the build, the sinks, the state database."""
    n, got = len(p.records), r.tally.deliveries
    print(
        f"{r.label}: {len(r.runs)} x send --now, all exited after {r.wall:.1f} s: "
        f"{n / r.wall:,.1f} reports/s, {got / r.wall:,.1f} deliveries/s"
    )
    for i, (run, off) in enumerate(zip(r.runs, r.offsets, strict=True)):
        built, waited = run.first(BUILT), run.first(WAITED)
        what = (
            f"built the day after {built[0]:.1f} s"
            if built
            else "found the day being built"
            if waited
            else "did not build"
        )
        print(
            f"  reporter {i + 1}: started at {off:.1f} s, exit {run.code} after {run.wall:.1f} "
            f"s, {what}, {sent_by(run):,} deliveries sent, CPU {run.cpu:.1f} s, peak RSS "
            f"{run.rss_mib:.0f} MiB"
        )
        if built:
            print(f"    {built[1].split(': ', 1)[-1]}")
    first = r.tally.first - r.tally.started if r.tally.first else float("nan")
    print(
        f"  first delivery at {first:.1f} s, last at {r.tally.last - r.tally.started:.1f} s; "
        f"peak connections {r.total.peak} ({r.total.host_peak} to one rua host)"
    )
    dupes = sum(c - 1 for c in r.tally.seen.values() if c > 1)
    ids = len({rid for rid, _ in r.tally.seen})
    print(
        f"  sinks: {got:,} deliveries, {len(r.tally.seen):,} distinct, {ids:,} Report-IDs, "
        f"{dupes} received twice; state: {r.statuses}, {r.states}"
    )


def check_round(p: Plan, r: Round, lanes: int) -> list[str]:
    """What the round broke (nothing: an empty list)."""
    n, got, label = len(p.records), r.tally.deliveries, r.label
    builders = sum(1 for run in r.runs if run.first(BUILT))
    dupes = sum(c - 1 for c in r.tally.seen.values() if c > 1)
    ids = len({rid for rid, _ in r.tally.seen})
    problems = []
    if builders != 1:
        problems.append(f"{label}: {builders} reporters logged 'built', not exactly one")
    if any(run.code != 0 for run in r.runs):
        tails = [" | ".join(line for _, line in run.err[-3:]) for run in r.runs if run.code]
        problems.append(f"{label}: exit codes {[run.code for run in r.runs]}: {tails}")
    if r.statuses != {"delivered": n} or ids != n:
        problems.append(f"{label}: {n:,} domains, states {r.statuses}, {ids:,} Report-IDs")
    lost, unknown = r.sent - set(r.tally.seen), set(r.tally.seen) - r.sent
    if lost or unknown or dupes or r.tally.unreadable or got != len(r.sent):
        problems.append(
            f"{label}: {len(lost)} sent not received, {len(unknown)} received not "
            f"sent, {dupes} received twice, {got:,} received for {len(r.sent):,}"
        )
    skipped = r.states.get("skipped", 0)
    if (len(r.sent), skipped) != (p.expected_sent, p.expected_skipped):
        problems.append(
            f"{label}: {len(r.sent):,} sent, {skipped:,} skipped; expected "
            f"{p.expected_sent:,} and {p.expected_skipped:,}"
        )
    if sum(sent_by(run) for run in r.runs) != len(r.sent):
        problems.append(
            f"{label}: the reporters sent {[sent_by(run) for run in r.runs]}, "
            f"{len(r.sent):,} deliveries in all: some attempted twice"
        )
    if r.total.peak > lanes * len(r.runs) or r.total.host_peak > len(r.runs):
        problems.append(
            f"{label}: {r.total.peak} connections at once, {r.total.host_peak} to "
            f"one host ({len(r.runs)} x {lanes} lanes, one per host each)"
        )
    return problems
