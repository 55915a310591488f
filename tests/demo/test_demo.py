"""The README's main job: ``tlsrpt-reporter demo`` end to end on the bundled sample."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_collects_builds_signs_and_delivers_every_report() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "demo"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "sent 3000 datagrams, dropped 0" in out
    assert "received 3000, accepted 3000, rejected 0" in out
    built = int(re.search(r"built (\d+) reports", out)[1])  # type: ignore[index]
    delivered = re.search(r"delivered: (\d+) by mail .* (\d+) by HTTPS POST", out)
    assert delivered, out
    mails, posts = int(delivered[1]), int(delivered[2])
    assert mails + posts == built > 250
    assert mails > 0 and posts > 0
    assert f"DKIM: {mails} of {mails} mails verify" in out
    workdir = Path(re.search(r"everything is in (\S+)", out)[1])  # type: ignore[index]
    try:
        assert len(list((workdir / "mail").glob("*.eml"))) == mails
        assert len(list((workdir / "https").glob("*.json.gz"))) == posts
    finally:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
