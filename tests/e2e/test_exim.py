"""Real Exim end to end: Debian's Exim 4.96 (unpacked, never installed: it would replace
Postfix) delivers to fake MX servers, ingest-log reads its main log, `build` makes the reports.

Debian builds Exim with GnuTLS, whose log line for any certificate failure is the same
("certificate verification failed"): expired, self-signed and mismatched certificates are all
reported as validation-failure, which docs/log-adapters.md says.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rigs.exim import Destination, exim_available, name_checks_possible, run_exim
from support.mta_logs import reports_from_log
from support.paths import DATA

DESTINATIONS = [
    Destination("valid.test", "valid", "verify", messages=2),
    Destination("expired.test", "expired", "verify", messages=2),
    Destination("self-signed.test", "self-signed", "verify", messages=2),
    Destination("mismatch.test", "mismatch", "verify", messages=2),
    Destination("no-starttls.test", "no-starttls", "encrypt", messages=2),
    Destination("self-signed-may.test", "self-signed", "may", messages=1),
]

EXPECTED: dict[str, tuple[int, int, dict[str, int]]] = {
    "valid.test": (2, 0, {}),
    "expired.test": (0, 2, {"validation-failure": 2}),
    "self-signed.test": (0, 2, {"validation-failure": 2}),
    "mismatch.test": (0, 2, {"validation-failure": 2}),
    "no-starttls.test": (0, 2, {"starttls-not-supported": 2}),
    # tls_try_verify_hosts: delivered over TLS with CV=no, a successful opportunistic session
    "self-signed-may.test": (1, 0, {}),
}


def test_real_exim_outcomes_end_up_in_the_right_reports(tmp_path: Path, shared_dir: Path) -> None:
    reason = exim_available()
    if reason is not None:
        pytest.skip(f"Exim cannot run here: {reason}")
    if not name_checks_possible():
        pytest.skip("no mount namespace for the rig's hosts file: Exim cannot check names here")
    log = run_exim(shared_dir / "exim", DESTINATIONS, timeout=90)
    # Exim writes local time without a zone: the host's zone is the default.
    assert reports_from_log(tmp_path, log, fmt="exim") == EXPECTED


def test_a_captured_exim_log_gives_the_same_reports(tmp_path: Path) -> None:
    log = DATA / "exim-4.96-tls.log"
    assert reports_from_log(tmp_path, log, "--timezone", "UTC", fmt="exim") == EXPECTED
