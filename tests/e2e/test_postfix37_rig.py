"""The Postfix rig itself: real Postfix 3.7 delivers to a good MX and defers a plaintext one."""

from __future__ import annotations

from pathlib import Path

from rigs.postfix37 import postfix_available, run_postfix
from support.mta_logs import valid_and_plain_log


def test_postfix_logs_sent_and_tls_required_deferral(shared_dir: Path) -> None:
    lines = valid_and_plain_log(postfix_available, run_postfix, shared_dir / "postfix")
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
