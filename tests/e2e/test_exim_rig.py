"""The Exim rig itself: real Exim 4.96 delivers to a good MX and defers a plaintext one."""

from __future__ import annotations

from pathlib import Path

from rigs.exim import exim_available, run_exim
from support.mta_logs import valid_and_plain_log


def test_exim_logs_delivery_and_tls_required_deferral(shared_dir: Path) -> None:
    lines = valid_and_plain_log(exim_available, run_exim, shared_dir / "exim")
    assert any(" => rcpt@valid.test " in line and " X=TLS" in line for line in lines)
    assert any(
        " == rcpt@plain.test " in line
        and "a TLS session is required, but the server did not offer TLS support" in line
        for line in lines
    )
