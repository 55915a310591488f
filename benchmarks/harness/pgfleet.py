"""The fleet of ``fleet.py``: a throwaway PostgreSQL cluster set up as docs/fleet.md says, the
collector databases of MTA hosts, timed ``push`` runs, and command processes whose log lines
are stamped with the moment they arrive.

The cluster and the SQL come from the tests (``tests/rigs/postgres.py``,
``tests/fleet/fleet_site.py``): the caller puts ``tests`` and ``tests/fleet`` on ``sys.path``
before importing this module. Nothing here is part of the figures but what ``push`` and the
reporters' processes do.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fleet_site import DOC_DATABASE, HOSTS, REPORTER, doc_sql, mta_config, push_role
from rigs.postgres import Cluster
from support.site import session, sts

from harness.measure import vm_hwm_kib
from tlsrpt_reporter.model import Datagram
from tlsrpt_reporter.report import fleet_source
from tlsrpt_reporter.schedule.timing import day_end
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode
from tlsrpt_reporter.wire.encode import datagram


def host_names(count: int) -> list[str]:
    """``mta1`` .. ``mtaN``: the first three are docs/fleet.md's."""
    return [f"mta{number}" for number in range(1, count + 1)]


class FleetCluster:
    """A started cluster with the roles of docs/fleet.md (and one more per host past its
    three); :meth:`new_fleet` makes a fleet database as the document says."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.cluster = Cluster()
        self.hosts = list(hosts)
        try:
            self._set_up()
        except BaseException:
            self.cluster.remove()
            raise

    def _set_up(self) -> None:
        self.cluster.start()
        # The rig turns durability off for tests; a fleet's server keeps it on, and the
        # figures stand beside SQLite's, which waits for the disk at every commit.
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            self.cluster.sql(f"ALTER SYSTEM SET {setting} = on")
        self.cluster.sql("SELECT pg_reload_conf()")
        for statement in doc_sql("as the superuser"):
            if statement.startswith("CREATE ROLE"):
                self.cluster.sql(statement)
        for host in self.hosts:
            if host not in HOSTS:
                self.cluster.sql(f"CREATE ROLE {push_role(host)} LOGIN IN ROLE tlsrpt_push")

    def settings(self) -> str:
        """The server's durability settings, as it runs them."""
        names = ("fsync", "synchronous_commit", "full_page_writes")
        shown = [self.cluster.query(f"SHOW {name}", "postgres")[0][0] for name in names]
        return ", ".join(f"{name} = {value}" for name, value in zip(names, shown, strict=True))

    def new_fleet(self, name: str) -> str:
        """Database ``name`` made as docs/fleet.md says: its tables created by the reporter's
        first read, ``fleet_host`` mapping each host to its role. Returns the reporter's URL."""
        for statement in doc_sql("as the superuser"):
            if not statement.startswith("CREATE ROLE"):
                self.cluster.sql(statement.replace(DOC_DATABASE, name))
        url = self.cluster.url(name, REPORTER)
        fleet_source.days(url)  # creates the tables, as the reporter's first read does
        for statement in doc_sql("as tlsrpt_reporter"):
            self.cluster.sql(statement, name, REPORTER)
        for host in self.hosts:
            if host not in HOSTS:
                self.cluster.sql(
                    f"INSERT INTO fleet_host (host, role) VALUES ('{host}', '{push_role(host)}')",
                    name,
                    REPORTER,
                )
        return url

    def push_configs(self, tmp: Path, fleet: str, dbs: dict[str, Path]) -> dict[str, Path]:
        """One MTA host's configuration per host: its collector database, ``[push]`` as its
        own role (a conninfo through the cluster's socket)."""
        return {
            host: mta_config(
                tmp / f"push-{fleet}-{host}.toml",
                db,
                self.cluster.conninfo(fleet, push_role(host)),
                host,
            )
            for host, db in dbs.items()
        }

    def remove(self) -> None:
        """Stop the server and delete its files."""
        self.cluster.remove()


# (domain index, host index) -> (successful sessions, failed sessions) of that host.
Share = Callable[[int, int], tuple[int, int]]


@dataclass
class Collected:
    """The collector databases of the hosts, and of one collector that saw every session;
    how long each write of the day took, and how many sessions went in."""

    hosts: dict[str, Path] = field(default_factory=dict)
    write_seconds: dict[str, float] = field(default_factory=dict)
    merged: Path = Path()
    merged_seconds: float = 0.0
    sessions: int = 0


def _failed(domain: str, host_index: int) -> Datagram:
    """A failed STS session whose failure detail names the host's own address."""
    detail = {"c": 204, "s": f"192.0.2.{host_index + 1}", "n": f"mx.{domain}", "r": "198.51.100.4"}
    policy = sts(domain) | {"t": 1, "f": 1, "failure-details": [detail]}
    return decode(datagram(domain, [policy], None))


def collect(
    tmp: Path, day: str, domains: Sequence[str], hosts: Sequence[str], share: Share
) -> Collected:
    """Write ``day`` into a collector database per host and one holding every session, through
    the collector's own decoding, aggregation and writes; the record of every domain is left
    to DNS (None)."""
    ok = [decode(session(domain, None)) for domain in domains]
    merged, out = Aggregate(), Collected()
    for h, host in enumerate(hosts):
        agg = Aggregate()
        seen = day_end(day) - 3600 - 60 * h
        for i, domain in enumerate(domains):
            good, bad = share(i, h)
            entries = [(ok[i], good)] if good else []
            if bad:
                entries.append((_failed(domain, h), bad))
            for target in (agg, merged):
                target.add_many(day, seen, entries)
            out.sessions += good + bad
        out.hosts[host] = tmp / f"{host}.sqlite"
        out.write_seconds[host] = _write(out.hosts[host], agg)
    out.merged = tmp / "all.sqlite"
    out.merged_seconds = _write(out.merged, merged)
    return out


def _write(db: Path, agg: Aggregate) -> float:
    """The collector's write of what ``agg`` holds (build the batch, one transaction); s."""
    conn = store.connect(db)
    started = time.perf_counter()
    store.write(conn, store.build_batch(agg))
    took = time.perf_counter() - started
    conn.close()
    return took


@dataclass(frozen=True)
class Finished:
    """A finished command: wall and CPU seconds, peak RSS, exit code, standard output, and each
    line of standard error with the seconds since the start at which it arrived."""

    wall: float
    cpu: float
    rss_mib: float
    code: int
    out: str
    err: list[tuple[float, str]]

    def first(self, pattern: str) -> tuple[float, str] | None:
        """The first line of standard error matching ``pattern`` (with its time), if any."""
        return next(((t, line) for t, line in self.err if re.search(pattern, line)), None)


class Command:
    """A command started now in a process of its own; :meth:`wait` gives its :class:`Finished`.
    A thread reads its standard error as it comes, then takes its CPU time (``wait4``); another
    samples its peak RSS (VmHWM) while it runs. Not ``wait4``'s ``ru_maxrss``: a child's starts
    at what its parent held when it was started (here, hundreds of MiB of generated day)."""

    def __init__(self, argv: Sequence[str], out: Path) -> None:
        self._out = out
        self._file = out.open("w")
        self.started = time.perf_counter()
        self._proc = subprocess.Popen(argv, stdout=self._file, stderr=subprocess.PIPE, text=True)
        self._err: list[tuple[float, str]] = []
        self._result: Finished | None = None
        self._peak_kib = 0
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._watch, daemon=True),
                         threading.Thread(target=self._sample, daemon=True)]  # fmt: skip
        for thread in self._threads:
            thread.start()

    def _sample(self) -> None:
        # VmHWM only grows; what the last 20 ms before the exit add is missed.
        while not self._done.wait(0.02):
            self._peak_kib = max(self._peak_kib, vm_hwm_kib(self._proc.pid))

    def _watch(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._err.append((time.perf_counter() - self.started, line.rstrip("\n")))
        _, status, usage = os.wait4(self._proc.pid, 0)
        wall = time.perf_counter() - self.started
        self._done.set()
        self._file.close()
        self._result = Finished(
            wall,
            usage.ru_utime + usage.ru_stime,
            self._peak_kib / 1024,
            os.waitstatus_to_exitcode(status),
            self._out.read_text(),
            self._err,
        )

    def wait_for(self, pattern: str) -> None:
        """Wait until a line of standard error matches ``pattern``, or the command exits."""
        while not self._done.is_set():
            if any(re.search(pattern, line) for _, line in self._err):
                return
            time.sleep(0.05)

    def wait(self) -> Finished:
        """Wait for the command to exit."""
        for thread in self._threads:
            thread.join()
        assert self._result is not None
        return self._result


@dataclass(frozen=True)
class Pushed:
    """One ``push``: rows written (summed over its days), its outcomes, and the process."""

    rows: int
    outcomes: list[str]
    run: Finished


def push(python: str, config: Path, out: Path) -> Pushed:
    """Run ``tlsrpt-reporter push`` for one host and read its lines (one per day:
    ``DAY  written  N rows  complete``, or ``unchanged`` ...)."""
    run = Command(
        [python, "-m", "tlsrpt_reporter.cli", "push", "--config", str(config)], out
    ).wait()
    rows, outcomes = 0, []
    for line in run.out.splitlines()[1:]:
        words = line.split()
        outcomes.append(words[1] if len(words) > 1 else "?")
        if len(words) > 2 and words[1] == "written":
            rows += int(words[2])
    return Pushed(rows, outcomes, run)
