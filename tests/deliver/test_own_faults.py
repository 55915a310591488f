"""Faults on our side, told once and honestly (deliver.sender, deliver.resolver, logs.collapsed,
store.own_problems): with the resolver down, ``send`` asks a few names, stops asking, exits 1
with one line saying DNS is unreachable, and ``status`` shows it until a pass works again; with
the relay down, 190 identical failures are one warning and one line with the count.

The real command against real servers on loopback: a DNS server that is stopped or never
answers, a relay port with nothing listening.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rigs.dnsserver import DnsServer
from rigs.smtpserver import SmtpServer
from support.site import one_day_site

from tlsrpt_reporter.deliver.resolver import UNREACHABLE_AFTER


def _site(tmp: Path, records: dict[str, str | None], *, dns_port: int, relay_port: int) -> Path:
    """A collected day with one session per domain of ``records`` (domain -> the record the MTA
    saw, None: looked up in DNS at send time) and a reporter's configuration."""
    return one_day_site(tmp, records, relay_port=relay_port, dns_port=dns_port, dns_timeout=1)


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tlsrpt_reporter.cli", *args, "--config", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _closed_port() -> int:
    """A loopback TCP port nothing listens on (the kernel just gave it out and took it back)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tlsrpt-reporter: error:")]


def _attempts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT domain, attempts FROM report").fetchall())


def _gauge(metrics: str, line_start: str) -> str:
    (line,) = [line for line in metrics.splitlines() if line.startswith(line_start)]
    return f"{float(line.rpartition(' ')[2]):g}"  # prometheus_client writes 1 as "1.0"


DOMAINS = [f"d{n:02d}.example" for n in range(40)]


@pytest.mark.parametrize("outage", ["stopped", "never answers"])
def test_send_with_dns_down_stops_asking_exits_1_with_one_line_and_status_shows_it(
    tmp_path: Path, outage: str
) -> None:
    qnames = [f"_smtp._tls.{domain}" for domain in DOMAINS]
    with DnsServer(drop=qnames) as dns, SmtpServer() as relay:
        if outage == "stopped":
            dns.stop()  # the port is closed: nothing answers there any more
        config = _site(tmp_path, dict.fromkeys(DOMAINS), dns_port=dns.port, relay_port=relay.port)
        sent = _cli(config, "send", "--now")
        asked = {query.name for query in dns.queries}
    assert sent.returncode == 1, sent.stderr
    (error,) = _errors(sent.stderr)
    assert "DNS is unreachable" in error and "[dns] nameservers" in error
    assert f"{len(DOMAINS) - UNREACHABLE_AFTER} reports and deliveries wait" in error
    # Each lookup that timed out is one warning alike the others: the first, and the count.
    lookups = [line for line in sent.stderr.splitlines() if "DNS lookup for" in line]
    assert len(lookups) == 2, sent.stderr
    assert lookups[1].endswith(f"(and {UNREACHABLE_AFTER - 1} more like it)")
    if outage == "never answers":
        assert len(asked) == UNREACHABLE_AFTER  # then it stopped asking
    # The reports not looked up wait for the next pass, without an attempt counted.
    attempts = _attempts(tmp_path / "reporter.sqlite")
    assert sorted(attempts.values()).count(0) == len(DOMAINS) - UNREACHABLE_AFTER
    assert "next report: due now" in sent.stdout

    status = _cli(config, "status")
    assert status.returncode == 0, status.stderr
    assert "problem at the last delivery pass" in status.stdout
    assert "DNS is unreachable" in status.stdout
    metrics = _cli(config, "status", "--format", "prometheus").stdout
    assert _gauge(metrics, 'tlsrpt_reporter_own_problems{kind="dns"}') == "1"
    assert _gauge(metrics, 'tlsrpt_reporter_own_problems{kind="relay"}') == "0"


def test_when_dns_answers_again_the_next_send_delivers_everything_and_clears_the_problem(
    tmp_path: Path,
) -> None:
    qnames = [f"_smtp._tls.{domain}" for domain in DOMAINS]
    with DnsServer(drop=qnames) as dns, SmtpServer() as relay:
        config = _site(tmp_path, dict.fromkeys(DOMAINS), dns_port=dns.port, relay_port=relay.port)
        assert _cli(config, "send", "--now").returncode == 1
        dns.drop = set()
        dns.zone = {q: [("TXT", f'"v=TLSRPTv1; rua=mailto:tls@{q[11:]}"')] for q in qnames}
        again = _cli(config, "send", "--now")
        assert again.returncode == 0, again.stderr
        received = sorted(rcpt for message in relay.messages for rcpt in message.rcpt_tos)
    assert received == [f"tls@{domain}" for domain in DOMAINS]  # each once
    assert _errors(again.stderr) == []
    status = _cli(config, "status")
    assert "problem at the last delivery pass" not in status.stdout
    metrics = _cli(config, "status", "--format", "prometheus").stdout
    assert _gauge(metrics, 'tlsrpt_reporter_own_problems{kind="dns"}') == "0"


def test_a_relay_down_is_one_warning_one_count_and_one_error_not_190_lines(
    tmp_path: Path,
) -> None:
    domains = [f"r{n:03d}.example" for n in range(190)]
    records = {domain: f"v=TLSRPTv1; rua=mailto:tls@{domain}" for domain in domains}
    relay_port = _closed_port()
    with DnsServer({}) as dns:
        config = _site(tmp_path, records, dns_port=dns.port, relay_port=relay_port)
        sent = _cli(config, "send", "--now")
    assert sent.returncode == 1, sent.stderr
    failed = [line for line in sent.stderr.splitlines() if "attempt 1 failed" in line]
    assert len(failed) == 2, sent.stderr
    assert failed[1].endswith("(and 189 more like it)")
    (error,) = _errors(sent.stderr)
    assert f"the mail relay 127.0.0.1:{relay_port} cannot be reached" in error
    assert len(sent.stderr.splitlines()) < 10, sent.stderr
    assert "attempted 190 deliveries: 0 sent, 190 to retry" in sent.stdout
    metrics = _cli(config, "status", "--format", "prometheus").stdout
    assert _gauge(metrics, 'tlsrpt_reporter_own_problems{kind="relay"}') == "1"
