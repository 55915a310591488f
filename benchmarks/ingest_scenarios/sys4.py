"""(e) sys4: sys4's ``tlsrpt-collectd`` (PyPI ``tlsrpt-reporter``), blasted like ``blast``."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

from harness.collectors import Service, read_only, run_collector
from harness.model import SETTLE_LIMIT, Data, Row, Settings
from harness.output import n, outcome_row, report, rss_text, timing_text

from ingest_scenarios import blast


class Sys4Collector(Service):
    """sys4's ``tlsrpt-collectd`` 0.6 (notes: /tmp/sys4_notes.md)."""

    name = "sys4"

    def __init__(self, root: Path, executable: str) -> None:
        super().__init__(root)
        self.executable = executable

    def command(self) -> list[str]:
        """Its defaults, but commit when idle for 1 s (like our flush) and survive bad data."""
        return [
            self.executable,
            "--storage",
            f"sqlite://{self.db}",
            "--socketname",
            self.socket_path,
            "--sockettimeout",
            "1",
            "--dump_path_for_invalid_datagram",
            str(self.dir / "invalid.dat"),
            "--log_level",
            "info",
        ]

    def is_ready(self, log: str) -> bool:
        """A fresh database is created, moved aside by the initial rollover and created again:
        ready once the second one is set up."""
        _, moved, after = log.partition("Old database moved to")
        return bool(moved) and "setup finished" in after

    def stored(self) -> int | None:
        """Sum of ``cntrtotal`` (one per policy; samplegen sends one policy per datagram) over
        the database and the one a UTC-midnight rollover moved aside."""
        total = 0
        for path in (self.db, self.db.with_name(self.db.name + ".yesterday")):
            if not path.exists():
                continue
            try:
                with contextlib.closing(read_only(path)) as conn:
                    total += conn.execute(
                        "SELECT COALESCE(SUM(cntrtotal), 0) FROM finalresults"
                    ).fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    return None
        return total


def find_sys4(venv: Path) -> tuple[str | None, str]:
    """sys4's ``tlsrpt-collectd`` in ``venv``, installing it there if missing; (path, why not)."""
    exe = venv / "bin" / "tlsrpt-collectd"
    if exe.exists():
        return str(exe), ""
    print(f"sys4: {exe} missing, installing tlsrpt-reporter into {venv} ...", flush=True)
    steps = (
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", "tlsrpt-reporter"],
    )
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(cmd)} failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"{' '.join(cmd)} exited with {done.returncode}: {tail[0]}"
    if not exe.exists():
        return None, f"installed, but {exe} is missing"
    return str(exe), ""


def run(qlen: int, root: Path, settings: Settings, data: Data, exe: str) -> Row:
    """sys4's collector at ``exe``, blasted like the blast scenario."""
    out = run_collector(Sys4Collector(root, exe), blast.senders(settings, data), SETTLE_LIMIT)
    row = outcome_row(qlen, "sys4", out)
    text = (
        f"sent {n(out.sends.sent)}, dropped at sender {n(out.sends.dropped)}, stored "
        f"{n(out.stored)}, loss {n(row.loss)}; {timing_text(out)}; peak RSS "
        f"{rss_text(out.rss_kib)}"
    )
    return report(row, text)
