"""``ingest-log`` on a ``.gz`` that is not valid gzip (bad header, bad deflate data, a wrong
CRC, cut short): one line naming the file, exit 2 (bad input), no traceback."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

_GOOD = gzip.compress(b"Mar  1 10:00:00 mx postfix/smtp[1]: nothing\n" * 50)
CORRUPT = {
    "not-gzip": b"this is not gzip\n",
    "bad-deflate": _GOOD[:10] + b"\xff" * 40,
    "bad-crc": _GOOD[:-8] + b"\0" * 8,
    "cut-short": _GOOD[: len(_GOOD) // 2],
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_ingest_log_names_a_corrupt_gz_in_one_line(tmp_path: Path, name: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[collectd]\ndb = "{tmp_path / "collectd.sqlite"}"\n')
    log = tmp_path / f"{name}.log.gz"
    log.write_bytes(CORRUPT[name])
    result = subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "ingest-log", "--format", "postfix",
         "--config", str(config), str(log)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(log) in lines[0] and "gzip" in lines[0], lines
