"""A reporter site for end-to-end tests: real SMTP, HTTPS and DNS servers on loopback, a
collected day, a configuration, and the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rigs.dnsserver import DnsServer
from rigs.httpsserver import HttpsTestServer
from rigs.smtpserver import SmtpServer

from tlsrpt_reporter.deliver import dkim
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode
from tlsrpt_reporter.wire.encode import datagram

DAY = "2026-03-01"
SUBMITTER = "example.net"


def sts(domain: str) -> dict[str, Any]:
    return {
        "policy-type": 2,
        "policy-domain": domain,
        "policy-string": ["version: STSv1", "mode: enforce", f"mx: mx.{domain}", "max_age: 1"],
        "mx-host": [f"mx.{domain}"],
    }


def dkim_key(directory: Path, domain: str) -> tuple[Path, str]:
    """A new RSA key in ``directory/dkim.pem`` (PKCS#8) and the DKIM record that publishes it
    for ``domain``, selector tlsrpt."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = directory / "dkim.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem, dkim.record_for(dkim.load_key(dkim.DkimKey(domain, "tlsrpt", pem)))


def loopback_delivery(
    *,
    submitter: str,
    relay_port: int,
    key: Path,
    record: str,
    ca_file: Path,
    https_timeout: int,
    dns_port: int,
    dns_timeout: int,
) -> str:
    """The ``[reporter.mail]``, ``[[reporter.mail.dkim]]``, ``[reporter.https]`` and ``[dns]``
    tables of a reporter that reaches only loopback test servers: mail from
    tlsrpt-noreply@``submitter`` through the relay on 127.0.0.1:``relay_port``, signed with
    ``key`` (selector tlsrpt, its ``record`` given); HTTPS to 127/8 trusting ``ca_file``; DNS
    from 127.0.0.1:``dns_port``."""
    return f"""\
[reporter.mail]
from = "tlsrpt-noreply@{submitter}"
relay = "127.0.0.1:{relay_port}"
[[reporter.mail.dkim]]
domain = "{submitter}"
selector = "tlsrpt"
key = "{key}"
record = "{record}"
[reporter.https]
allow_private = ["127.0.0.0/8"]
ca_file = "{ca_file}"
timeout = {https_timeout}
[dns]
nameservers = ["127.0.0.1"]
port = {dns_port}
timeout = {dns_timeout}
"""


def one_day_site(
    tmp: Path,
    records: dict[str, str | None],
    *,
    relay_port: int,
    dns_port: int,
    dns_timeout: int = 2,
    ca_file: Path | None = None,
    reporter_extra: str = "",
    state_db: str = "",
) -> Path:
    """A collected :data:`DAY` with one session per domain of ``records`` (domain -> the record
    the MTA saw; None: looked up in DNS at send time) and the configuration of a reporter that
    sends it to loopback servers (:func:`loopback_delivery`, a fresh CA unless ``ca_file``);
    ``reporter_extra`` goes into ``[reporter]``; ``state_db`` replaces the SQLite state file
    (a ``postgresql://`` URL). Returns the configuration's path."""
    agg = Aggregate()
    for domain, record in records.items():
        agg.add(DAY, 1_772_330_000.0, decode(session(domain, record)))
    collector = tmp / "collectd.sqlite"
    conn = store.connect(collector)
    store.write(conn, store.build_batch(agg))
    conn.close()
    pem, dkim_record = dkim_key(tmp, SUBMITTER)
    if ca_file is None:
        ca_file = tmp / "ca.pem"
        trustme.CA().cert_pem.write_to_path(str(ca_file))
    config = tmp / "config.toml"
    config.write_text(
        f'[collectd]\ndb = "{collector}"\nsocket = "{tmp}/collectd.sock"\n'
        f'[reporter]\norganization_name = "Example"\ncontact_info = "tlsrpt@{SUBMITTER}"\n'
        f'db = "{state_db or tmp / "reporter.sqlite"}"\ngrace = 0\nspread = 0\n{reporter_extra}'
        + loopback_delivery(
            submitter=SUBMITTER,
            relay_port=relay_port,
            key=pem,
            record=dkim_record,
            ca_file=ca_file,
            https_timeout=5,
            dns_port=dns_port,
            dns_timeout=dns_timeout,
        )
    )
    return config


def session(domain: str, record: str | None, failed: bool = False) -> bytes:
    policy = sts(domain) | {"t": 0, "f": 0}
    if failed:
        detail = {"c": 204, "s": "192.0.2.1", "n": f"mx.{domain}", "r": "198.51.100.4"}
        policy |= {"failure-details": [detail], "t": 1, "f": 1}
    return datagram(domain, [policy], record)


@dataclass
class Site:
    """Everything one test needs: servers, files, and a way to run the CLI."""

    tmp: Path
    config: Path
    collector_db: Path
    reporter_db: Path | str  # a SQLite file, or a postgresql:// URL (make_site's state_db)
    smtp: SmtpServer
    web: HttpsTestServer
    dns: DnsServer
    record: str

    def cli(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tlsrpt_reporter.cli", *args]
        cmd += ["--config", str(config or self.config)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def popen_send(self) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "tlsrpt_reporter.cli", "send", "--now"]
        cmd += ["--config", str(self.config)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def deliveries(self) -> dict[str, tuple[str, int]]:
        conn = state.connect(self.reporter_db)
        rows = conn.execute(
            "SELECT report.domain, delivery.state, delivery.attempts FROM delivery"
            " JOIN report ON report.id = delivery.report"
        ).fetchall()
        conn.close()
        return {domain: (st, attempts) for domain, st, attempts in rows}

    def report_status(self) -> dict[str, tuple[str, str]]:
        conn = state.connect(self.reporter_db)
        rows = conn.execute("SELECT domain, status, last_error FROM report").fetchall()
        conn.close()
        return {domain: (status, error) for domain, status, error in rows}


def make_site(tmp_path: Path, state_db: str = "") -> Iterator[Site]:
    """Servers, a collected day and a configuration; the ``site`` fixture yields it. The
    reporter's state database is a SQLite file in ``tmp_path``, or ``state_db`` (a
    ``postgresql://`` URL) when given."""
    pem, record = dkim_key(tmp_path, SUBMITTER)
    with (
        SmtpServer() as smtp,
        HttpsTestServer(tmp_path) as web,
        DnsServer(
            {
                "_smtp._tls.dns.example": [("TXT", '"v=TLSRPTv1; " "rua=mailto:tls@dns.example"')],
                "reports.test": [("A", "127.0.0.1")],
                "evil.test": [("A", "10.1.2.3")],
            },
            servfail=("_smtp._tls.servfail.example",),
        ) as dns,
    ):
        collector_db = tmp_path / "collectd.sqlite"
        agg = Aggregate()
        grams = [
            session("mail.example", "v=TLSRPTv1; rua=mailto:tlsrpt@mail.example"),
            session("mail.example", "v=TLSRPTv1; rua=mailto:tlsrpt@mail.example", failed=True),
            session("web.example", f"v=TLSRPTv1;rua={web.url()}"),
            session("dns.example", None),
            session("evil.example", "v=TLSRPTv1; rua=https://evil.test/collect"),
            session("servfail.example", None),
            session("never.example", "v=TLSRPTv1; rua=mailto:x@never.example"),
        ]
        for raw in grams:
            agg.add(DAY, 1_772_330_000.0, decode(raw))
        conn = store.connect(collector_db)
        store.write(conn, store.build_batch(agg))
        conn.close()
        reporter_db: Path | str = state_db or tmp_path / "reporter.sqlite"
        config = tmp_path / "config.toml"
        config.write_text(
            f"""
[collectd]
db = "{collector_db}"
socket = "{tmp_path}/collectd.sock"
[reporter]
organization_name = "Example Mail Ltd"
contact_info = "tlsrpt@{SUBMITTER}"
db = "{reporter_db}"
grace = 0
spread = 0
never_report = ["never.example"]
"""
            + loopback_delivery(
                submitter=SUBMITTER,
                relay_port=smtp.port,
                key=pem,
                record=record,
                ca_file=web.ca_file,
                https_timeout=5,
                dns_port=dns.port,
                dns_timeout=1,
            )
        )
        yield Site(tmp_path, config, collector_db, reporter_db, smtp, web, dns, record)
