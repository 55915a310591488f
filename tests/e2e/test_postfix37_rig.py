"""The Postfix rig itself: real Postfix 3.7 delivers to a good MX and defers a plaintext one."""

from __future__ import annotations

from pathlib import Path

import pytest
from rigs.postfix37 import Destination, postfix_available, run_postfix


def test_postfix_logs_sent_and_tls_required_deferral(shared_dir: Path) -> None:
    reason = postfix_available()
    if reason is not None:
        pytest.skip(reason)
    log = run_postfix(
        shared_dir / "postfix",
        [
            Destination("valid.test", "valid", "verify"),
            Destination("plain.test", "no-starttls", "encrypt"),
        ],
        timeout=60,
    )
    lines = log.read_text().splitlines()
    assert any("to=<rcpt@valid.test>" in line and "status=sent" in line for line in lines)
    assert any(
        "Verified TLS connection established to 127.0.0.1[127.0.0.1]" in line for line in lines
    )
    assert any(
        "to=<rcpt@plain.test>" in line
        and "status=deferred" in line
        and "TLS is required, but was not offered" in line
        for line in lines
    )
