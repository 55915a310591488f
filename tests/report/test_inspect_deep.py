"""``inspect`` on a mail message whose MIME parts nest thousands deep (Python's email parser
recurses once per level): the "not valid" verdict in one line, exit 1, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _deep_message(levels: int) -> str:
    head = "From: a@example.net\nTo: b@example.com\nSubject: deep\nMIME-Version: 1.0\n"
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(levels)
    )
    closing = "".join(f"--b{i}--\n" for i in reversed(range(levels)))
    return head + opening + "Content-Type: text/plain\n\nhi\n" + closing


def test_inspect_refuses_a_deeply_nested_message_in_one_line(tmp_path: Path) -> None:
    eml = tmp_path / "deep.eml"
    eml.write_text(_deep_message(3000))
    result = subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "inspect", str(eml)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "nested too deeply" in lines[0] and "deep.eml" in lines[0]
