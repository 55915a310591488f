"""Real MTA end to end: Debian's Postfix delivers to fake MX servers on loopback, ingest-log
reads its log, the reporter builds the day's reports, and each fake domain's report carries the
result types and counts its server provoked.

Also: the log one such run wrote (tests/data/postfix-3.7-tls.log) read on any machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rigs.postfix37 import Destination, postfix_available, run_postfix
from support.mta_logs import reports_from_log
from support.paths import DATA

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


def test_real_postfix_outcomes_end_up_in_the_right_reports(
    tmp_path: Path, shared_dir: Path
) -> None:
    reason = postfix_available()
    if reason is not None:
        pytest.skip(f"Postfix cannot run here: {reason}")
    log = run_postfix(shared_dir / "postfix", DESTINATIONS, timeout=90)
    # Postfix's maillog_file writes the host's local time, as syslog does: no --timezone.
    assert reports_from_log(tmp_path, log) == EXPECTED


def test_a_captured_postfix_log_gives_the_same_reports(tmp_path: Path) -> None:
    # Written by tests/postfixrig.py with the destinations above on a host whose zone is UTC.
    log = DATA / "postfix-3.7-tls.log"
    assert reports_from_log(tmp_path, log, "--timezone", "UTC") == EXPECTED
