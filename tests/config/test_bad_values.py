"""Configuration that TOML accepts but that means nothing (``nan``, ``inf``, negative or huge
numbers, an empty reporter.db, a from that is no address, an unknown key, nesting too deep for
the parser) is refused with one line naming the key and exit code 2: by ``check-config``, at
start (``send``), and by ``tlsrpt-collectd --check-config`` for ``[collectd]``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_DEEP = "[reporter]\nx = " + "[" * 50_000 + "]" * 50_000 + "\n"

# (config text, what the error line must name)
REPORTER_CASES = [
    ("[reporter]\ngrace = nan\n", "reporter.grace"),
    ("[reporter]\ngrace = inf\n", "reporter.grace"),
    ("[reporter]\ngrace = -1\n", "reporter.grace"),
    ("[reporter]\ngrace = 99999999999999999999999999999999999\n", "reporter.grace"),
    ("[reporter]\nspread = nan\n", "reporter.spread"),
    ("[reporter]\nspread = -inf\n", "reporter.spread"),
    ("[reporter]\nretry_for = nan\n", "reporter.retry_for"),
    ("[reporter]\nretry_for = -5\n", "reporter.retry_for"),
    ("[reporter]\nsource_deadline = inf\n", "reporter.source_deadline"),
    ("[reporter]\nsource_timeout = nan\n", "reporter.source_timeout"),
    ("[reporter]\nsource_timeout = -0.5\n", "reporter.source_timeout"),
    ("[reporter.https]\ntimeout = nan\n", "reporter.https.timeout"),
    ("[reporter.https]\ntimeout = inf\n", "reporter.https.timeout"),
    ("[reporter.https]\ntimeout = -3\n", "reporter.https.timeout"),
    ("[reporter.https]\ntimeout = 99999999999999999999999999999999999\n",
     "reporter.https.timeout"),
    ("[reporter.https]\nmax_response_bytes = 99999999999999999999\n",
     "reporter.https.max_response_bytes"),
    ("[dns]\ntimeout = nan\n", "dns.timeout"),
    ("[dns]\ntimeout = inf\n", "dns.timeout"),
    ("[dns]\ntimeout = -1\n", "dns.timeout"),
    ('[reporter]\ndb = ""\n', "reporter.db"),
    ('[reporter.mail]\nfrom = "tlsrpt"\n', "reporter.mail.from"),
    ('[reporter.mail]\nfrom = "tlsrpt@exa mple.net"\n', "reporter.mail.from"),
    ("[reporter]\nmax_failure_details = 99999999999999999999\n", "reporter.max_failure_details"),
    ("[reporter]\nmax_reports_per_destination = 99999999999999999999\n",
     "reporter.max_reports_per_destination"),
    ("[reporter]\ndead_after_days = -1\n", "reporter.dead_after_days"),
    ("[reporter]\ndead_after_days = 2.5\n", "reporter.dead_after_days"),
    ("[reporter]\nsuppress_for = nan\n", "reporter.suppress_for"),
    ("[reporter]\nsuppress_for = 0\n", "reporter.suppress_for"),
    ("[reporter]\nsuppress_for = 99999999999999999999\n", "reporter.suppress_for"),
    ("[reporter]\ngracee = 1\n", "reporter.gracee"),
    ("[reporter.mail]\nrelayy = 1\n", "reporter.mail.relayy"),
    ("[dns]\nportt = 1\n", "dns.portt"),
    ("[reporter.https]\ntimeoutt = 1\n", "reporter.https.timeoutt"),
    ('[reporter]\nredirect = "ops@example.net"\n', "reporter.redirect"),
    ('[reporter]\nredirect = "mailto:"\n', "reporter.redirect"),
    ('[reporter]\nredirect = "mailto:a@x.example,b@y.example"\n', "reporter.redirect"),
    ('[reporter]\nredirect = "dir:relative/path"\n', "reporter.redirect"),
    ('[reporter.mail]\nsign_by = "mta"\n', "reporter.mail.sign_by"),
    ('[reporter.mail]\nsign_by = "relay"\nrelay = "direct"\n', "reporter.mail.sign_by"),
    ('[reporter.mail]\nsign_by = "relay"\n[[reporter.mail.dkim]]\ndomain = "x.example"\n'
     'selector = "s"\nkey = "/k.pem"\n', "reporter.mail.sign_by"),
    (_DEEP, "too deeply nested"),
]  # fmt: skip

COLLECTD_CASES = [
    ("[collectd]\nflush_interval = nan\n", "collectd.flush_interval"),
    ("[collectd]\nflush_interval = inf\n", "collectd.flush_interval"),
    ("[collectd]\nflush_interval = -1\n", "collectd.flush_interval"),
    ("[collectd]\nretention_days = 99999999999999999999\n", "collectd.retention_days"),
    ("[collectd]\nmax_pending_keys = 99999999999999999999\n", "collectd.max_pending_keys"),
    ("[collectd]\nmax_held_bytes = 1048576\n", "collectd.max_held_bytes"),
    ("[collectd]\nmax_failure_details = 0\n", "collectd.max_failure_details"),
    ("[collectd]\nsocket_modee = 1\n", "collectd.socket_modee"),
    ("[collectd]\nx = " + "{x = " * 50_000 + "1" + "}" * 50_000 + "\n", "too deeply nested"),
]


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=120)


def _assert_one_line(result: subprocess.CompletedProcess[str], names: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    # check-config reports on standard output, among its other findings when the error is in
    # [dns] or [reporter.https] (config.load.DEFERRABLE); the other commands on standard error.
    lines = [line for line in (result.stdout + result.stderr).splitlines() if names in line]
    assert len(lines) == 1, (result.stdout, result.stderr)
    assert "error" in lines[0] or "tlsrpt-" in lines[0], lines[0]


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [text[:40].replace("\n", " ") for text, _ in cases]


@pytest.mark.parametrize(("text", "names"), REPORTER_CASES, ids=_ids(REPORTER_CASES))
@pytest.mark.parametrize("command", [["check-config"], ["send", "--now"]])
def test_reporter_refuses_a_bad_value_in_one_line(
    tmp_path: Path, command: list[str], text: str, names: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    result = _run("-m", "tlsrpt_reporter.cli", *command, "--config", str(config))
    _assert_one_line(result, names)


@pytest.mark.parametrize(("text", "names"), COLLECTD_CASES, ids=_ids(COLLECTD_CASES))
def test_collector_and_reporter_refuse_a_bad_collectd_value_in_one_line(
    tmp_path: Path, text: str, names: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    _assert_one_line(_run("-m", "tlsrpt_collectd.daemon", "--check-config", "--config",
                          str(config)), names)  # fmt: skip
    _assert_one_line(_run("-m", "tlsrpt_reporter.cli", "check-config", "--config",
                          str(config)), names)  # fmt: skip
