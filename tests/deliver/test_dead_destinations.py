"""Dead destinations (deliver.dead, deliver.suppression, store.suppressed) over simulated days,
against real servers on loopback: an MX that answers 550, an https rua whose host does not
exist (NXDOMAIN from a real DNS server), an https receiver that answers 500.

Each day is one pass of the real sender with a clock set to the next morning: the day's
sessions are collected, built, and sent (``send --now``), as ``run`` would do over a week. After
``reporter.dead_after_days`` (7) days on which every attempt failed at the destination, the
eighth makes no attempt to it; a success resets the count; failures on our side do not count;
``unsuppress`` releases it; a new rua in DNS is tried at once; ``status`` and ``summary`` list it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import json
import random
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rigs.dnsserver import DnsServer
from rigs.httpsserver import HttpsTestServer, Reply
from rigs.smtpserver import SmtpServer
from support.site import SUBMITTER, Site, dkim_key, loopback_delivery, session

from tlsrpt_reporter.cli import commands
from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.deliver.sender import Sender, SendSummary
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store import suppressed
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode

MAILTO = "mailto:tlsrpt@mx550.example"
GONE = "https://gone.test/tlsrpt"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@dataclass
class Rig:
    """The servers, files and the one sender that runs every day's pass (as ``run`` keeps
    one Sender, and so one resolver, for its whole life)."""

    site: Site
    mx: SmtpServer
    sender: Sender
    passes: int = 0

    @property
    def web500(self) -> str:
        return self.site.web.url("/v1/tlsrpt")

    def day(self, n: int) -> str:
        """The n-th simulated day (1-based): the last of ``_DAYS`` is yesterday, so the
        suppression made on the morning after it is in force for the CLI's real clock."""
        today = dt.datetime.now(dt.UTC).date()
        return (today - dt.timedelta(days=_DAYS - n + 1)).isoformat()

    def run_day(self, n: int, *domains: str) -> SendSummary:
        """Collect one session of each domain on day ``n``, then build and send the next
        morning, with the sender's clock at that moment."""
        day = self.day(n)
        agg = Aggregate()
        for domain in domains:
            agg.add(day, timing.day_end(day) - 43_200, decode(session(domain, None)))
        conn = store.connect(self.site.collector_db)
        store.write(conn, store.build_batch(agg))
        conn.close()
        now = timing.day_end(day) + 600
        self.sender.clock = lambda: now
        conn = state.connect(self.site.reporter_db)
        try:
            schedule.build_due(self.sender.cfg, conn, now, random.Random(n))
            summary = asyncio.run(self.sender.send_due(conn, force=True))
        finally:
            conn.close()
        self.passes += 1
        return summary

    def deliveries(self, n: int) -> dict[str, tuple[str, int, str]]:
        """Destination -> (state, attempts, detail) of day ``n``'s deliveries."""
        return {
            dest: (st, attempts, detail)
            for dest, st, attempts, detail in self.query(
                "SELECT destination, state, delivery.attempts, detail FROM delivery JOIN report"
                " ON report.id = delivery.report WHERE report.day = ?",
                self.day(n),
            )
        }

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.site.reporter_db)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def suppressed(self) -> list[str]:
        return [row[0] for row in self.query("SELECT destination FROM suppressed")]


_DAYS = 8


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    pem, record = dkim_key(tmp_path, SUBMITTER)
    with (
        SmtpServer(rcpt_reply="550 5.1.1 <tlsrpt@mx550.example>: no such user") as mx,
        HttpsTestServer(tmp_path) as web,
        DnsServer() as dns,
    ):
        dns.zone.update({
            "_smtp._tls.mx550.example": [("TXT", f'"v=TLSRPTv1; rua={MAILTO}"')],
            "mx550.example": [("MX", "10 mx.mx550.example.")],
            "mx.mx550.example": [("A", "127.0.0.1")],
            "_smtp._tls.gone.example": [("TXT", f'"v=TLSRPTv1; rua={GONE}"')],
            "_smtp._tls.web500.example": [("TXT", f'"v=TLSRPTv1; rua={web.url()}"')],
            "reports.test": [("A", "127.0.0.1")],
        })  # fmt: skip
        collector_db = tmp_path / "collectd.sqlite"
        reporter_db = tmp_path / "reporter.sqlite"
        config = tmp_path / "config.toml"
        config.write_text(
            f"""
[collectd]
db = "{collector_db}"
[reporter]
organization_name = "Example Mail Ltd"
contact_info = "tlsrpt@{SUBMITTER}"
db = "{reporter_db}"
grace = 0
spread = 0
"""
            + loopback_delivery(
                submitter=SUBMITTER,
                relay_port=mx.port,
                key=pem,
                record=record,
                ca_file=web.ca_file,
                https_timeout=5,
                dns_port=dns.port,
                dns_timeout=1,
            )
        )
        store.connect(collector_db).close()
        cfg = load_config(str(config))
        sender = commands._sender(cfg.reporter, cfg.dns)
        # Straight to the recipients' MX (the rig's server), as a relay-less reporter sends.
        sender.smtp_settings = dataclasses.replace(
            sender.smtp_settings, relay="direct", direct_port=mx.port, allow_private=LOOPBACK
        )
        site = Site(tmp_path, config, collector_db, reporter_db, mx, web, dns, record)
        yield Rig(site, mx, sender)


def test_seven_failed_days_suppress_a_destination_and_the_eighth_day_makes_no_attempt(
    rig: Rig,
) -> None:
    web, dns = rig.site.web, rig.site.dns
    web.script(*[Reply(500, b"broken")] * 50)
    domains = ("mx550.example", "gone.example", "web500.example")
    for n in range(1, _DAYS):
        summary = rig.run_day(n, *domains)
        # Day n's report to each, and day n-1's retry to the https ones (a 550 is final).
        assert summary.attempted == (3 if n == 1 else 5) and summary.sent == 0
        assert rig.suppressed() == [], f"only {n} failed days"
    tried = (rig.mx.connections, len(web.requests), len(dns.asked("gone.test")))
    assert tried[0] >= 7 and tried[1] >= 7 and tried[2] >= 7
    summary = rig.run_day(_DAYS, *domains)
    assert summary.attempted == 0, "the eighth day tries none of the dead destinations"
    assert (rig.mx.connections, len(web.requests), len(dns.asked("gone.test"))) == tried
    # The record itself is read again every day: a changed rua would be seen.
    assert len(dns.asked("_smtp._tls.gone.example", "TXT")) == _DAYS
    assert sorted(rig.suppressed()) == sorted([MAILTO, GONE, rig.web500])
    today = rig.deliveries(_DAYS)
    assert {st for st, _, _ in today.values()} == {"suppressed"}
    assert all(attempts == 0 for _, attempts, _ in today.values()), "not an attempt"
    detail = today[MAILTO][2]
    assert "suppressed until" in detail and "7 days in a row" in detail and "550" in detail
    assert "HTTP 500" in today[rig.web500][2] and "has no address" in today[GONE][2]
    statuses = {row[0] for row in rig.query(
        "SELECT status FROM report WHERE day = ?", rig.day(_DAYS))}  # fmt: skip
    assert statuses == {"no-destination"}, "nothing was tried: not a failure"


def test_status_and_summary_list_it_and_unsuppress_releases_it(rig: Rig) -> None:
    for n in range(1, _DAYS + 1):
        rig.run_day(n, "mx550.example", "gone.example")
    assert sorted(rig.suppressed()) == [GONE, MAILTO]
    site = rig.site

    text = site.cli("status")
    assert text.returncode == 0, text.stderr
    assert "suppressed destinations (2)" in text.stdout
    line = next(row for row in text.stdout.splitlines() if MAILTO in row and "until" in row)
    assert "7 failed days" in line and "550" in line
    rows = json.loads(site.cli("status", "--json").stdout)
    listed = {e["destination"]: e for r in rows for e in r["suppressed"]}
    assert set(listed) == {GONE, MAILTO} and listed[MAILTO]["reports"] == 1

    summary = site.cli("summary", "--format", "json")
    assert summary.returncode == 0, summary.stderr
    shown = {e["destination"]: e for e in json.loads(summary.stdout)["suppressed"]}
    assert set(shown) == {GONE, MAILTO} and shown[GONE]["failed_days"] == 7
    assert "suppressed destinations" in site.cli("summary").stdout
    page = site.cli("summary", "--html", str(site.tmp / "page"))
    assert page.returncode == 0, page.stderr
    html = (site.tmp / "page" / "index.html").read_text()
    assert 'id="suppressed-table"' in html and f'data-destination="{GONE}"' in html

    unknown = site.cli("unsuppress", "mailto:nobody@mx550.example")
    assert unknown.returncode == 2
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert "not suppressed" in unknown.stderr and MAILTO in unknown.stderr
    assert site.cli("unsuppress").returncode == 2, "a destination or --all"

    # The MX takes mail again; release the address (as typed, without mailto:).
    rig.mx.config.rcpt_reply = None
    released = site.cli("unsuppress", "tlsrpt@mx550.example")
    assert released.returncode == 0, released.stderr
    assert f"released {MAILTO}" in released.stdout
    assert rig.suppressed() == [GONE]
    summary = rig.run_day(_DAYS + 1, "mx550.example", "gone.example")
    sent = [m.rcpt_tos for m in rig.mx.messages]
    # Today's report, and yesterday's that the suppression held back (inside retry_for).
    assert sent == [["tlsrpt@mx550.example"]] * 2 and summary.sent == 2
    assert rig.deliveries(_DAYS)[MAILTO][0] == "sent"
    assert rig.deliveries(_DAYS + 1)[GONE][0] == "suppressed"

    every = site.cli("unsuppress", "--all")
    assert every.returncode == 0 and f"released {GONE}" in every.stdout
    assert rig.suppressed() == []
    assert "suppressed destinations" not in site.cli("status").stdout
    assert site.cli("unsuppress", "--all").stdout.strip() == "no destination is suppressed"


def test_a_success_on_any_day_resets_the_count(rig: Rig) -> None:
    dns = rig.site.dns
    flaky = rig.web500.replace("reports.test", "flaky.test")
    dns.zone["_smtp._tls.flaky.example"] = [("TXT", f'"v=TLSRPTv1; rua={flaky}"')]
    rig.site.web.ca.issue_cert("flaky.test").configure_cert(rig.site.web.context)
    for n in range(1, 10):
        # flaky.test exists only on day 4: its one good day among eight bad ones.
        if n == 4:
            dns.zone["flaky.test"] = [("A", "127.0.0.1")]
        else:
            dns.zone.pop("flaky.test", None)
        summary = rig.run_day(n, "flaky.example")
        assert summary.attempted >= 1, f"day {n} tried it"
        assert rig.suppressed() == []
    assert [r.path for r in rig.site.web.requests] == ["/v1/tlsrpt"] * 2, "day 4 and its retry"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_failures_on_our_side_do_not_count(rig: Rig) -> None:
    dns = rig.site.dns
    dns.zone["_smtp._tls.nodns.example"] = [("TXT", '"v=TLSRPTv1; rua=https://nodns.test/r"')]
    dns.servfail.add("nodns.test")  # no answer for its host: not known to be theirs
    down = dataclasses.replace(rig.sender.smtp_settings, relay=f"127.0.0.1:{_closed_port()}")
    with SmtpServer(rcpt_reply="554 5.7.1 Relay access denied") as refusing:
        unwilling = dataclasses.replace(down, relay=f"127.0.0.1:{refusing.port}")
        for n in range(1, 9):
            # Our relay is down for four days, then refuses to relay for four.
            rig.sender.smtp_settings = down if n <= 4 else unwilling
            summary = rig.run_day(n, "mx550.example", "nodns.example")
            assert summary.attempted >= 2 and summary.sent == 0
        assert refusing.connections >= 4
        asked = len(dns.asked("nodns.test"))
        rig.sender.smtp_settings = unwilling
        summary = rig.run_day(9, "mx550.example", "nodns.example")
    assert rig.suppressed() == [] and summary.attempted >= 2, "the ninth day tries both again"
    assert len(dns.asked("nodns.test")) > asked
    assert rig.query("SELECT * FROM destination_day") == [], "nothing of theirs was seen"


def test_a_changed_rua_in_dns_is_tried_at_once(rig: Rig) -> None:
    for n in range(1, _DAYS + 1):
        rig.run_day(n, "gone.example")
    assert rig.suppressed() == [GONE]
    moved = rig.site.web.url("/moved")
    rig.site.dns.zone["_smtp._tls.gone.example"] = [("TXT", f'"v=TLSRPTv1; rua={moved}"')]
    summary = rig.run_day(_DAYS + 1, "gone.example")
    assert summary.sent == 1
    assert [r.path for r in rig.site.web.requests] == ["/moved"]
    ((state_of_moved, attempts, _),) = rig.deliveries(_DAYS + 1).values()
    assert set(rig.deliveries(_DAYS + 1)) == {moved} and (state_of_moved, attempts) == ("sent", 1)
    assert rig.suppressed() == [GONE], "the old rua stays suppressed"


def test_dead_after_days_zero_never_suppresses(rig: Rig) -> None:
    rig.sender.cfg = dataclasses.replace(rig.sender.cfg, dead_after_days=0)
    for n in range(1, _DAYS + 2):
        assert rig.run_day(n, "gone.example").attempted >= 1, f"day {n} tried it"
    assert rig.suppressed() == []


def test_a_new_database_has_the_tables_and_no_suppression(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "r.sqlite")
    assert suppressed.listed(conn, time.time()) == []
    conn.close()
