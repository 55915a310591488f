"""Long work shows its progress (logs.Progress): ``build`` on a terminal draws a rich bar with
what is done, the rate and the time left; with standard error a pipe it draws nothing (plain
lines come only for work that runs long: tests/core/test_logs.py). The real command, on a
real pseudo-terminal from the ``pty`` module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from support.pty_run import on_a_pty
from support.site import DAY, session

from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode

DOMAINS = 60


def _site(tmp: Path) -> list[str]:
    """A collected day of :data:`DOMAINS` domains and the ``build`` command for it."""
    agg = Aggregate()
    for n in range(DOMAINS):
        domain = f"p{n:02d}.example"
        agg.add(DAY, 1_772_330_000.0, decode(session(domain, f"v=TLSRPTv1; rua=mailto:t@{domain}")))
    collector = tmp / "collectd.sqlite"
    conn = store.connect(collector)
    store.write(conn, store.build_batch(agg))
    conn.close()
    config = tmp / "config.toml"
    config.write_text(
        f'[collectd]\ndb = "{collector}"\nsocket = "{tmp}/collectd.sock"\n'
        '[reporter]\norganization_name = "Example"\ncontact_info = "tlsrpt@example.net"\n'
        f'db = "{tmp / "reporter.sqlite"}"\ngrace = 0\n'
    )
    return [sys.executable, "-m", "tlsrpt_reporter.cli", "build", "--day", DAY,
            "--out", str(tmp / "out"), "--config", str(config)]  # fmt: skip


def test_build_on_a_terminal_draws_a_bar_with_the_rate_and_the_time_left(tmp_path: Path) -> None:
    status, err = on_a_pty(_site(tmp_path))
    assert status == 0, err
    assert f"building {DAY}" in err
    assert f"{DOMAINS}/{DOMAINS}" in err
    assert re.search(r"\d[\d,.]*/s", err), err  # domains a second
    assert re.search(r"ETA \S*\d:\d\d:\d\d", err), err
    assert "\x1b[?25h" in err  # the cursor given back


def test_build_with_stderr_a_pipe_draws_no_bar(tmp_path: Path) -> None:
    built = subprocess.run(_site(tmp_path), capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    assert f"{DAY}: {DOMAINS} reports written" in built.stdout
    assert "\x1b" not in built.stderr and "ETA" not in built.stderr
    assert "\r" not in built.stderr
