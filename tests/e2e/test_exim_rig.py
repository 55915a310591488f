"""The Exim rig itself: real Exim 4.96 delivers to a good MX and defers a plaintext one."""

from __future__ import annotations

from pathlib import Path

import pytest
from rigs.exim import Destination, exim_available, run_exim


def test_exim_logs_delivery_and_tls_required_deferral(shared_dir: Path) -> None:
    reason = exim_available()
    if reason is not None:
        pytest.skip(reason)
    log = run_exim(
        shared_dir / "exim",
        [
            Destination("valid.test", "valid", "verify"),
            Destination("plain.test", "no-starttls", "encrypt"),
        ],
        timeout=60,
    )
    lines = log.read_text().splitlines()
    assert any(" => rcpt@valid.test " in line and " X=TLS" in line for line in lines)
    assert any(
        " == rcpt@plain.test " in line
        and "a TLS session is required, but the server did not offer TLS support" in line
        for line in lines
    )
