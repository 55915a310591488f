"""From an MTA's log to the reports it makes: ingest-log, then build, through the real CLI; and
the log of an MTA rig's basic run."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rigs.postfix37 import Destination

from tlsrpt_reporter.report import schema


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def reports_from_log(
    tmp_path: Path, log: Path, *ingest_args: str, fmt: str = "postfix"
) -> dict[str, Any]:
    """ingest-log, then `build` for every day it stored; the reports by policy domain."""
    db = tmp_path / "collector.sqlite"
    ingested = cli("ingest-log", "--format", fmt, *ingest_args, str(log), "--db", str(db))
    assert ingested.returncode == 0, ingested.stderr
    days = re.search(r"days: ([0-9, -]+);", ingested.stdout)
    assert days is not None, ingested.stdout
    config = tmp_path / "reporter.toml"
    config.write_text(
        "[collectd]\n"
        f'db = "{db}"\n'
        "[reporter]\n"
        'organization_name = "Rig Mail"\n'
        'contact_info = "tlsrpt@rig.test"\n'
        f'db = "{tmp_path / "reporter.sqlite"}"\n'
    )
    found: dict[str, Any] = {}
    for day in days[1].split(", "):
        out = tmp_path / f"out-{day}"
        # A live rig's log is of today: --force builds a day that has not finished.
        built = cli("build", "--config", str(config), "--day", day, "--out", str(out), "--force")
        assert built.returncode == 0, built.stderr
        for path in out.glob("*.json.gz"):
            report = json.loads(gzip.decompress(path.read_bytes()))
            schema.validate(report)
            for policy in report["policies"]:
                domain = policy["policy"]["policy-domain"]
                ok, bad, kinds = found.get(domain, (0, 0, {}))
                for detail in policy.get("failure-details", []):
                    kinds[detail["result-type"]] = (
                        kinds.get(detail["result-type"], 0) + detail["failed-session-count"]
                    )
                found[domain] = (
                    ok + policy["summary"]["total-successful-session-count"],
                    bad + policy["summary"]["total-failure-session-count"],
                    kinds,
                )
                assert policy["policy"]["policy-type"] == "no-policy-found"
    return found


def valid_and_plain_log(
    available: Callable[[], str | None], run: Callable[..., Path], workdir: Path
) -> list[str]:
    """The log lines of an MTA rig (``available``, ``run``: ``rigs.exim`` or ``rigs.postfix37``)
    that sent one message to a valid MX at TLS level verify and one to an MX without STARTTLS
    at level encrypt; the test is skipped where the rig cannot run."""
    reason = available()
    if reason is not None:
        pytest.skip(reason)
    destinations = [
        Destination("valid.test", "valid", "verify"),
        Destination("plain.test", "no-starttls", "encrypt"),
    ]
    return run(workdir, destinations, timeout=60).read_text().splitlines()
