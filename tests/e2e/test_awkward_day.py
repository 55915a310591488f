"""A day that mixes ordinary and awkward datagrams, through a real socket, the real collector, the
reporter and a real SMTP server: every ordinary report arrives, and the awkward values arrive in
their canonical form (docs/canonical-forms.md) or are counted as rejected."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import certifi
from rigs.dnsserver import DnsServer
from rigs.smtpserver import SmtpServer
from support.collector import Collector, send_all, today
from support.site import dkim_key, loopback_delivery

from tlsrpt_reporter.cli import commands
from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.report import schema
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.wire.encode import datagram

SUBMITTER = "reporter.example"
ORDINARY = ("one.example", "two.example", "three.example")


def _record(domain: str) -> str:
    return f"v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"


def _awkward() -> list[bytes]:
    sts = {
        "policy-type": 2,
        "policy-domain": "Awkward.Example.",
        "policy-string": ["version: STSv1", "", "mode: enforce", "mx: mx.awkward.example"],
        "mx-host": ["MX.Awkward.Example.", ""],
        "failure-details": [
            {
                "c": 203,
                "s": "::ffff:192.0.2.10",
                "n": "MX.Awkward.Example.",
                "h": "250-mx.awkward.example\r\n250-PIPELINING\r\n250 STARTTLS",
                "r": "fe80::25%eth0",
                "a": "handshake failed\r\nX-Injected: yes",
            }
        ],
        "t": 1,
        "f": 1,
    }
    tlsa_a = {"policy-type": 1, "policy-domain": "mx.tlsa.example",
              "policy-string": ["3 1 1 abcd", "2 1 1 ef01"], "t": 0, "f": 0}  # fmt: skip
    tlsa_b = tlsa_a | {"policy-string": ["2  1 1 EF01", "3 1 1 ABCD"]}  # served in another order
    huge = tlsa_a | {"policy-string": ["3 0 0 " + "AB" * 9000]}
    return [
        datagram("awkward.example", [sts], _record("awkward.example")),
        datagram("tlsa.example", [tlsa_a], _record("tlsa.example")),
        datagram("tlsa.example", [tlsa_b], _record("tlsa.example")),
        datagram("huge.example", [huge], _record("huge.example")),
    ]


def _reports(server: SmtpServer) -> dict[str, dict[str, Any]]:
    found = {}
    for message in server.messages:
        msg = email.message_from_bytes(message.data, policy=email.policy.default)
        attachment = list(msg.iter_parts())[1]
        report = json.loads(gzip.decompress(attachment.get_content()))
        schema.validate(report)
        found[str(msg["TLS-Report-Domain"])] = report
    return found


def test_a_day_of_ordinary_and_awkward_datagrams_is_reported_completely(
    make_collector: Callable[..., Collector], tmp_path: Path
) -> None:
    collector = make_collector().start()
    ordinary = [datagram(d, [{"policy-type": 9, "t": 0, "f": 0}], _record(d)) for d in ORDINARY]
    send_all(collector.socket, [*ordinary, *_awkward()])
    assert collector.stop() == 0
    day = today()
    counters = collector.counters(day)
    assert counters["rejected:policy-string-too-long"] == 1
    assert counters["accepted"] == len(ORDINARY) + 3

    key, record = dkim_key(tmp_path, SUBMITTER)
    ca_file = tmp_path / "ca.pem"  # no HTTPS rua today: any PEM file will do
    ca_file.write_text(certifi.contents())
    with SmtpServer() as smtp, DnsServer({}) as dns:
        config = tmp_path / "reporter.toml"
        config.write_text(
            f'[reporter]\norganization_name = "Awkward Test"\ncontact_info = "tlsrpt@{SUBMITTER}"\n'
            f'db = "{tmp_path / "reporter.sqlite"}"\nsources = ["{collector.db}"]\n'
            "grace = 0\nspread = 0\n"
            + loopback_delivery(
                submitter=SUBMITTER,
                relay_port=smtp.port,
                key=key,
                record=record,
                ca_file=ca_file,
                https_timeout=5,
                dns_port=dns.port,
                dns_timeout=1,
            )
        )
        cfg_all = load_config(config)
        cfg = commands.load(str(config))
        sender = commands._sender(cfg, cfg_all.dns)
        after = timing.day_end(day) + 60
        sender.clock = lambda: after
        conn = state.connect(cfg.db)
        schedule.build_due(cfg, conn, after, random.Random(1))
        summary = asyncio.run(sender.send_due(conn, force=True))
        conn.close()
        reports = _reports(smtp)
    assert not summary.problems
    assert set(ORDINARY) <= set(reports)
    assert "huge.example" not in reports

    awkward = reports["awkward.example"]["policies"][0]
    assert awkward["policy"]["policy-domain"] == "awkward.example"
    assert awkward["policy"]["policy-string"] == [
        "version: STSv1", "mode: enforce", "mx: mx.awkward.example",
    ]  # fmt: skip
    assert awkward["policy"]["mx-host"] == ["mx.awkward.example"]
    (detail,) = awkward["failure-details"]
    assert detail["sending-mta-ip"] == "192.0.2.10"
    assert detail["receiving-ip"] == "fe80::25"
    assert detail["receiving-mx-hostname"] == "mx.awkward.example"
    assert detail["receiving-mx-helo"] == "mx.awkward.example"
    assert "additional-information" not in detail
    assert detail["failure-reason-code"] == "handshake failed X-Injected: yes"

    # One RRset served in two orders and two spellings is one policy, counted twice.
    (tlsa,) = reports["tlsa.example"]["policies"]
    assert tlsa["policy"]["policy-string"] == ["2 1 1 EF01", "3 1 1 ABCD"]
    assert tlsa["summary"]["total-successful-session-count"] == 2
