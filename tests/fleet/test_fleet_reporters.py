"""The whole fleet (issue 16): three MTA hosts push, two reporters share the state in the same
PostgreSQL and run at once; the mails the relay receives carry the reports one collector that
saw every session gives, each report exactly once. Real pushes, real `send` processes, the
session's throwaway cluster, an aiosmtpd relay."""

from __future__ import annotations

import email
import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trustme
from fleet_site import HOSTS, Fleet, split_and_push
from fleet_site import cli as fleet_cli
from rigs.dnsserver import DnsServer
from rigs.smtpserver import SmtpServer
from support.site import SUBMITTER, dkim_key, loopback_delivery, session

from tlsrpt_reporter.schedule import timing

DAY = "2026-03-01"
START = timing.day_end(DAY) - 86400
AFTER_DAY = timing.day_end(DAY) + 3600
DOMAINS = [f"f{i:02d}.example" for i in range(24)]


def _sessions() -> list[tuple[bytes, float]]:
    """Three sessions per domain, one of them failed, each seen at its own time."""
    found = []
    for i, domain in enumerate(DOMAINS):
        record = f"v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"
        for n in range(3):
            raw = session(domain, record, failed=(n == 1))
            found.append((raw, START + 60 + (i * 3 + n) * 11.0))
    return found


def _config(tmp: Path, fleet: Fleet, relay: int, dns: int) -> Path:
    pem, record = dkim_key(tmp, SUBMITTER)
    ca = tmp / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config = tmp / "reporter.toml"
    config.write_text(
        "[reporter]\n"
        f'organization_name = "Fleet"\ncontact_info = "tlsrpt@{SUBMITTER}"\n'
        f'sources = ["{fleet.url()}"]\nexpected_hosts = {json.dumps(list(HOSTS))}\n'
        # The state in the same database as the fleet tables, shared by both reporters.
        f'db = "{fleet.url()}"\ngrace = 0\nspread = 0\n'
        + loopback_delivery(submitter=SUBMITTER, relay_port=relay, key=pem, record=record,
                            ca_file=ca, https_timeout=5, dns_port=dns, dns_timeout=1)
    )  # fmt: skip
    return config


def _attached(data: bytes) -> dict[str, Any]:
    """The report a mail carries (RFC 8460 §5.3: the gzip attachment), without its id."""
    for part in email.message_from_bytes(data).walk():
        if part.get_content_type() == "application/tlsrpt+gzip":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            report: dict[str, Any] = json.loads(gzip.decompress(payload))
            del report["report-id"]
            return report
    raise AssertionError("a mail without a report attached")


def _built(directory: Path) -> list[dict[str, Any]]:
    found = []
    for path in directory.glob("*.json.gz"):
        report = json.loads(gzip.decompress(path.read_bytes()))
        del report["report-id"]
        found.append(report)
    return found


def _key(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True)


def test_a_fleet_and_two_reporters_send_what_one_collector_would_each_once(
    fleet: Fleet, tmp_path: Path
) -> None:
    split_and_push(fleet, tmp_path, DAY, _sessions(), AFTER_DAY)
    with SmtpServer() as relay, DnsServer({}) as dns:
        config = _config(tmp_path, fleet, relay.port, dns.port)
        cmd = [sys.executable, "-m", "tlsrpt_reporter.cli", "send", "--now", "--config",
               str(config)]  # fmt: skip
        both = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]  # fmt: skip
        outs = [proc.communicate(timeout=180) for proc in both]
        assert [proc.returncode for proc in both] == [0, 0], outs
        mails = list(relay.messages)
    recipients = sorted(m.rcpt_tos[0].rpartition("@")[2] for m in mails)
    assert recipients == DOMAINS, "each report delivered once"
    single = fleet_cli("build", "--day", DAY, "--out", tmp_path / "single",
                       "--db", tmp_path / "all.sqlite", config=config)  # fmt: skip
    assert single.returncode == 0, single.stderr
    sent = sorted((_attached(m.data) for m in mails), key=_key)
    assert sent == sorted(_built(tmp_path / "single"), key=_key)
    assert sum(r["policies"][0]["summary"]["total-failure-session-count"] for r in sent) == 24
    builds = [err.count(f"built 24 reports for {DAY}") for _, err in outs]
    assert sorted(builds) == [0, 1], "the day was built once"
