"""A fleet for the tests: collector databases of MTA hosts, the fleet's PostgreSQL database
set up with the SQL of docs/fleet.md, configurations, and the real command line."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rigs.postgres import Cluster
from support.paths import ROOT

from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode

DOC = ROOT / "docs" / "fleet.md"
HOSTS = ("mta1", "mta2", "mta3")
REPORTER = "tlsrpt_reporter"
DOC_DATABASE = "tlsrpt_fleet"
TABLES = ("schema_version", "fleet_host", "fleet_policy", "fleet_failure", "fleet_counter",
          "pushed_day")  # fmt: skip


def push_role(host: str) -> str:
    """The login role docs/fleet.md gives ``host``."""
    return f"tlsrpt_push_{host}"


def doc_sql(marker: str) -> list[str]:
    """The statements of the ``sql`` block of docs/fleet.md that starts with ``-- marker``."""
    for block in re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.DOTALL):
        lines = [line.strip() for line in block.splitlines()]
        if lines and lines[0] == f"-- {marker}":
            text = " ".join(line for line in lines[1:] if not line.startswith("--"))
            return [s.strip() for s in text.split(";") if s.strip()]
    raise AssertionError(f"docs/fleet.md has no sql block starting with '-- {marker}'")


@dataclass(frozen=True)
class Fleet:
    """One test's fleet database on the session's cluster."""

    cluster: Cluster
    dbname: str

    def url(self, role: str = REPORTER) -> str:
        """A ``postgresql://`` URL (as reporter.sources takes it) for ``role``."""
        return self.cluster.url(self.dbname, role)

    def conninfo(self, role: str) -> str:
        """A libpq conninfo for ``role``."""
        return self.cluster.conninfo(self.dbname, role)

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every fleet table, in order (as the owner sees them: all)."""
        return {
            table: sorted(
                self.cluster.query(f"SELECT * FROM {table}", self.dbname, REPORTER), key=repr
            )
            for table in TABLES
        }

    def query(self, sql: str, role: str = REPORTER) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` as ``role``."""
        return self.cluster.query(sql, self.dbname, role)


def collect(db: Path, day: str, sessions: Iterable[tuple[bytes, float]]) -> None:
    """Fold datagrams (with the time each was seen) into a collector database on ``day``,
    through the collector's own decoding, aggregation and writes."""
    agg = Aggregate()
    for raw, seen in sessions:
        agg.add(day, seen, decode(raw))
    conn = store.connect(db)
    store.write(conn, store.build_batch(agg))
    conn.close()


def local_rows(db: Path, day: str) -> dict[str, list[tuple[Any, ...]]]:
    """A collector database's rows of ``day``, as the fleet tables hold them (no host, day)."""
    conn = store.connect(db, create=False)
    try:
        return {
            "fleet_policy": sorted(conn.execute(
                "SELECT policy_key, domain, record, policy_type, policy_domain, policy_string,"
                " mx_host, successful_session_count, failed_session_count, first_seen,"
                " last_seen FROM policy_count WHERE day = ?", (day,)), key=repr),
            "fleet_failure": sorted(conn.execute(
                "SELECT policy_key, detail_key, result_type, sending_mta_ip,"
                " receiving_mx_hostname, receiving_mx_helo, receiving_ip,"
                " additional_information, failure_reason_code, failed_session_count"
                " FROM failure_count WHERE day = ?", (day,)), key=repr),
            "fleet_counter": sorted(conn.execute(
                "SELECT name, value FROM day_counter WHERE day = ?", (day,)), key=repr),
        }  # fmt: skip
    finally:
        conn.close()


def fleet_rows(fleet: Fleet, host: str, day: str) -> dict[str, list[tuple[Any, ...]]]:
    """The fleet tables' rows of ``host`` on ``day``, in the shape of :func:`local_rows`."""
    out = {}
    for table in ("fleet_policy", "fleet_failure", "fleet_counter"):
        rows = fleet.query(f"SELECT * FROM {table} WHERE host = '{host}' AND day = '{day}'")
        out[table] = sorted(
            (tuple(bytes(v) if isinstance(v, memoryview) else v for v in row[2:]) for row in rows),
            key=repr,
        )
    return out


def toml(sections: dict[str, dict[str, object]]) -> str:
    """A TOML document of flat sections with strings, numbers, booleans and string lists."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str | Path):
            return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    out = []
    for name, keys in sections.items():
        out.append(f"[{name}]")
        out += [f"{key} = {value(v)}" for key, v in keys.items()]
    return "\n".join(out) + "\n"


def mta_config(path: Path, db: Path, database: str, host: str, days: int = 3) -> Path:
    """An MTA host's configuration: its collector database and ``[push]``."""
    path.write_text(toml({"collectd": {"db": db},
                          "push": {"database": database, "host": host, "days": days}}))  # fmt: skip
    return path


def reporter_config(path: Path, sources: list[str], state: Path, **extra: object) -> Path:
    """A reporter's configuration reading ``sources``."""
    reporter: dict[str, object] = {
        "organization_name": "Fleet Test", "contact_info": "tlsrpt@example.net",
        "sources": sources, "db": state, "instance_id": "fleet", **extra,
    }  # fmt: skip
    path.write_text(toml({"reporter": reporter}))
    return path


def cli(*args: str | Path, config: Path) -> subprocess.CompletedProcess[str]:
    """``tlsrpt-reporter ARGS --config CONFIG`` in a process of its own."""
    cmd = [sys.executable, "-m", "tlsrpt_reporter.cli", *map(str, args), "--config", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def split_and_push(
    fleet: Fleet, tmp: Path, day: str, sessions: list[tuple[bytes, float]], now: float
) -> dict[str, list[Any]]:
    """The fleet's usual test day: ``tmp/all.sqlite`` holds every session, as one collector
    that saw everything would; host ``HOSTS[n]`` holds every len(HOSTS)-th session from the
    n-th and pushes it as its own role at ``now``. Returns each host's push outcome."""
    import asyncio

    from tlsrpt_reporter.store import fleet_push

    collect(tmp / "all.sqlite", day, sessions)
    done: dict[str, list[Any]] = {}
    for number, host in enumerate(HOSTS):
        db = tmp / f"{host}.sqlite"
        collect(db, day, sessions[number :: len(HOSTS)])
        work = fleet_push.push(fleet.conninfo(push_role(host)), host, db, days=3,
                               retention_days=14, now=now)  # fmt: skip
        done[host] = list(asyncio.run(work))
    return done
