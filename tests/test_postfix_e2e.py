"""Real MTA end to end: Debian's Postfix delivers to fake MX servers on loopback, ingest-log
reads its log, the reporter builds the day's reports, and each fake domain's report carries the
result types and counts its server provoked.

Also: the log one such run wrote (tests/data/postfix-3.7-tls.log) read on any machine.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from postfixrig import Destination, postfix_available, run_postfix

from tlsrpt_reporter.report import schema

DATA = Path(__file__).parent / "data"

# domain, kind of fake MX, Postfix TLS level, messages
DESTINATIONS = [
    Destination("valid.test", "valid", "verify", messages=3),
    Destination("expired.test", "expired", "verify", messages=2),
    Destination("self-signed.test", "self-signed", "secure", messages=2),
    Destination("mismatch.test", "mismatch", "verify", messages=2),
    Destination("no-starttls.test", "no-starttls", "encrypt", messages=2),
    Destination("valid-may.test", "valid", "may", messages=1),
    Destination("self-signed-may.test", "self-signed", "may", messages=1),
]

# What each domain's report must say: (successful, failed, {result-type: count})
EXPECTED: dict[str, tuple[int, int, dict[str, int]]] = {
    "valid.test": (3, 0, {}),
    "expired.test": (0, 2, {"certificate-expired": 2}),
    "self-signed.test": (0, 2, {"certificate-not-trusted": 2}),
    "mismatch.test": (0, 2, {"certificate-host-mismatch": 2}),
    "no-starttls.test": (0, 2, {"starttls-not-supported": 2}),
    # Opportunistic TLS: an unverifiable certificate is still a successful TLS session.
    "valid-may.test": (1, 0, {}),
    "self-signed-may.test": (1, 0, {}),
}


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
        built = cli("build", "--config", str(config), "--day", day, "--out", str(out))
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


def test_real_postfix_outcomes_end_up_in_the_right_reports(tmp_path: Path) -> None:
    reason = postfix_available()
    if reason is not None:
        pytest.skip(f"Postfix cannot run here: {reason}")
    log = run_postfix(tmp_path / "postfix", DESTINATIONS, timeout=90)
    # Postfix's maillog_file writes the host's local time, as syslog does: no --timezone.
    assert reports_from_log(tmp_path, log) == EXPECTED


def test_a_captured_postfix_log_gives_the_same_reports(tmp_path: Path) -> None:
    # Written by tests/postfixrig.py with the destinations above on a host whose zone is UTC.
    log = DATA / "postfix-3.7-tls.log"
    assert reports_from_log(tmp_path, log, "--timezone", "UTC") == EXPECTED
