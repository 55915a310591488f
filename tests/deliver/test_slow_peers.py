"""Slow and hanging receivers (deliver.sender, deliver.lanes, deliver.attempt), against real
servers on loopback that trickle or hold their answer: an attempt ends at
``reporter.attempt_deadline`` with a one-line retryable failure; deliveries to other hosts go
on meanwhile, in at most ``reporter.delivery_lanes`` connections at once; a report goes to at
most ``reporter.max_destinations_per_host`` destinations on one host, the rest recorded as
skipped (RFC 8460 §7).

Every wait is bounded by an event or the attempt deadline, never by a sleep; the order of what
the servers saw (their shared event log) is what is asserted, not the clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import sqlite3
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from rigs.dnsserver import DnsServer
from rigs.slowpeers import Log, Request, ScriptedHttps, ScriptedSmtp
from support.site import DAY, SUBMITTER, dkim_key, loopback_delivery

from tlsrpt_reporter.cli import commands
from tlsrpt_reporter.config.load import parse
from tlsrpt_reporter.config.schema import Config
from tlsrpt_reporter.deliver import dkim
from tlsrpt_reporter.deliver.resolver import Resolver
from tlsrpt_reporter.deliver.sender import Sender, SendSummary
from tlsrpt_reporter.store import reports as state

GOOD_HOSTS = ("good1.test", "good2.test", "good3.test", "good4.test")


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    names = ("slow.test", "hang.test", "many.test", *GOOD_HOSTS)
    with DnsServer({name: [("A", "127.0.0.1")] for name in names}) as server:
        yield server


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _config(
    tmp: Path, dns: DnsServer, ca: trustme.CA, *, relay_port: int = 9, **reporter: Any
) -> Config:
    """A checked configuration (through the loader, as the CLI reads it) for loopback peers
    whose HTTPS certificates ``ca`` signed."""
    pem, record = dkim_key(tmp, SUBMITTER)
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    extra = "".join(f"{key} = {value!r}\n" for key, value in reporter.items())
    text = (
        f'[reporter]\norganization_name = "Example"\ncontact_info = "tlsrpt@{SUBMITTER}"\n'
        f'db = "{tmp / "reporter.sqlite"}"\n{extra}'
        + loopback_delivery(
            submitter=SUBMITTER,
            relay_port=relay_port,
            key=pem,
            record=record,
            ca_file=ca_file,
            https_timeout=30,
            dns_port=dns.port,
            dns_timeout=2,
        )
    )
    data = tomllib.loads(text)
    data["reporter"]["mail"]["helo_name"] = "reporter.test"  # no lookup of our own name
    return parse(data)


def _sender(cfg: Config) -> Sender:
    key = cfg.reporter.mail.dkim[0]
    loaded = dkim.load_key(dkim.DkimKey(key.domain, key.selector, Path(key.key), key.record))
    return Sender(cfg.reporter, Resolver(cfg.dns), cfg.reporter.https, [loaded])


def _add_report(conn: sqlite3.Connection, domain: str, record: str) -> int:
    state.insert_report(
        conn,
        DAY,
        {
            "domain": domain,
            "report_id": f"20260301.r.{domain}@{SUBMITTER}",
            "message_id": f"m.{domain}@{SUBMITTER}",
            "date": "Sun, 01 Mar 2026 00:40:00 +0000",
            "filename": f"{SUBMITTER}!{domain}!1772323200!1772409599.json.gz",
            "gzip": gzip.compress(b'{"policies": []}', mtime=0),
            "summary": f"TLS report for {domain}",
            "record": record,
            "send_at": 0.0,
        },
    )
    (report_id,) = conn.execute("SELECT id FROM report WHERE domain = ?", (domain,)).fetchone()
    return int(report_id)


def _rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT * FROM delivery").fetchall()
    conn.row_factory = None
    return [dict(row) for row in rows]


def _deliveries(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The delivery rows by destination (of tests whose destinations differ)."""
    return {row["destination"]: row for row in _rows(conn)}


def _send(sender: Sender, conn: sqlite3.Connection) -> SendSummary:
    return asyncio.run(sender.send_due(conn, force=True))


def test_a_relay_that_trickles_its_answer_is_cut_off_at_the_deadline_and_retried(
    tmp_path: Path, dns: DnsServer, ca: trustme.CA
) -> None:
    with ScriptedSmtp("relay", trickle=0.2) as relay:
        cfg = _config(tmp_path, dns, ca, relay_port=relay.port, attempt_deadline=1.5)
        conn = state.connect(cfg.reporter.db)
        _add_report(conn, "a.example", "v=TLSRPTv1; rua=mailto:tls@a.example")
        summary = _send(_sender(cfg), conn)
        row = _deliveries(conn)["mailto:tls@a.example"]
        assert (summary.attempted, summary.retrying) == (1, 1)
        assert (row["state"], row["error_kind"]) == ("failed-retrying", "timeout")
        error = row["last_error"]
        assert error.startswith(f"relay 127.0.0.1:{relay.port}: no final answer within 1.5s")
        assert "(reporter.attempt_deadline)" in error and "\n" not in error
        # Our own relay stuck is our problem: `send` says so and exits 1.
        (problem,) = summary.problems
        assert "mail relay" in problem and "reporter.attempt_deadline" in problem
        assert relay.messages == []
        relay.trickle = 0.0  # the relay recovers; the next pass delivers
        patient = dataclasses.replace(cfg.reporter, attempt_deadline=120.0)
        _send(_sender(dataclasses.replace(cfg, reporter=patient)), conn)
        assert _deliveries(conn)["mailto:tls@a.example"]["state"] == "sent"
        assert [rcpts for rcpts, _ in relay.messages] == [["tls@a.example"]]
        conn.close()


def test_an_https_receiver_that_trickles_its_answer_is_cut_off_at_the_deadline(
    tmp_path: Path, dns: DnsServer, ca: trustme.CA
) -> None:
    with ScriptedHttps(tmp_path, ("slow.test",), "slow", trickle=0.2, ca=ca) as slow:
        cfg = _config(tmp_path, dns, ca, attempt_deadline=1.5)
        conn = state.connect(cfg.reporter.db)
        url = slow.url("slow.test")
        _add_report(conn, "b.example", f"v=TLSRPTv1; rua={url}")
        summary = _send(_sender(cfg), conn)
        row = _deliveries(conn)[url]
        conn.close()
    assert len(slow.requests) == 1, "the report went out; the answer never came"
    assert (summary.retrying, summary.problems) == (1, [])
    assert (row["state"], row["error_kind"]) == ("failed-retrying", "timeout")
    assert row["last_error"].startswith(f"POST {url}: no final answer within 1.5s")
    assert "\n" not in row["last_error"]


def test_reports_to_other_hosts_are_delivered_while_one_host_hangs(
    tmp_path: Path, dns: DnsServer, ca: trustme.CA
) -> None:
    events = Log()
    good_seen: list[Request] = []
    with ScriptedHttps(tmp_path, ("hang.test",), "hang", events=events, hold=True, ca=ca) as hang:

        def count(request: Request) -> None:
            good_seen.append(request)
            if len(good_seen) == len(GOOD_HOSTS):
                hang.release.set()  # the hanging host lets go once every good one was served

        with ScriptedHttps(
            tmp_path, GOOD_HOSTS, "good", events=events, on_request=count, ca=ca
        ) as good:
            # The deadline is far away: only the lanes can serve the good hosts in time.
            cfg = _config(tmp_path, dns, ca, attempt_deadline=100.0, delivery_lanes=2)
            conn = state.connect(cfg.reporter.db)
            # The hanging host's delivery is the oldest due: one after another, it goes first.
            hung = _add_report(conn, "hung.example", f"v=TLSRPTv1; rua={hang.url('hang.test')}")
            state.add_destinations(conn, hung, [(hang.url("hang.test"), "pending", "")], 1000.0)
            for n, host in enumerate(GOOD_HOSTS):
                report = _add_report(conn, f"d{n}.example", f"v=TLSRPTv1; rua={good.url(host)}")
                state.add_destinations(conn, report, [(good.url(host), "pending", "")], 2000.0)
            summary = _send(_sender(cfg), conn)
            rows = _deliveries(conn)
            conn.close()
    # The hanging connection was still open (the client had not given up on it) when every
    # good host had its report.
    assert "hang: client hung up" not in events.entries
    released = events.index("hang: released")
    for host in GOOD_HOSTS:
        assert events.index(f"good: request {host}:{good.port}/v1/tlsrpt") < released
    assert {rows[good.url(h)]["state"] for h in GOOD_HOSTS} == {"sent"}
    assert rows[hang.url("hang.test")]["state"] == "failed-retrying"
    assert (summary.sent, summary.retrying) == (len(GOOD_HOSTS), 1)


def test_no_more_connections_than_lanes_are_open_at_once(
    tmp_path: Path, dns: DnsServer, ca: trustme.CA
) -> None:
    domains = [f"lane{n}.example" for n in range(8)]
    # Each answer to DATA waits until three sessions are open at once: three lanes must be.
    with ScriptedSmtp("relay", gate=3) as relay:
        cfg = _config(tmp_path, dns, ca, relay_port=relay.port, delivery_lanes=3)
        conn = state.connect(cfg.reporter.db)
        for domain in domains:
            _add_report(conn, domain, f"v=TLSRPTv1; rua=mailto:tls@{domain}")
        summary = _send(_sender(cfg), conn)
        conn.close()
    assert relay.peak == 3
    assert summary.sent == len(domains)
    assert sorted(r for rcpts, _ in relay.messages for r in rcpts) == [f"tls@{d}" for d in domains]


def test_a_record_listing_many_uris_on_one_host_gets_two_posts_the_rest_skipped(
    tmp_path: Path, dns: DnsServer, ca: trustme.CA
) -> None:
    with ScriptedHttps(tmp_path, ("many.test",), "many", ca=ca) as many:
        uris = [many.url("many.test", f"/r{n}") for n in range(80)]
        record = "v=TLSRPTv1; rua=" + ",".join(uris)
        cfg = _config(tmp_path, dns, ca)
        assert cfg.reporter.max_destinations_per_host == 2
        conn = state.connect(cfg.reporter.db)
        state.insert_day(conn, DAY, 0.0, [])  # for `status`
        _add_report(conn, "many.example", record)
        # A second domain pointing at the same host: the cap is per report, not per day.
        _add_report(conn, "also.example", record)
        _send(_sender(cfg), conn)
        rows = _rows(conn)
        (status,) = commands.status_rows(conn, DAY)
        conn.close()
    assert sorted(r.path for r in many.requests) == ["/r0", "/r0", "/r1", "/r1"]
    skipped = [row for row in rows if row["state"] == "skipped"]
    # The record parser keeps 16 rua (deliver.record.MAX_URIS); 2 of each report's are sent.
    assert len(skipped) == 2 * 14
    assert {row["attempts"] for row in skipped} == {0}
    assert all("reporter.max_destinations_per_host = 2" in row["detail"] for row in skipped)
    assert status["deliveries"] == {"sent": 4, "skipped": 28}
    assert status["reports"] == {"delivered": 2}


def test_a_host_that_timed_out_last_time_waits_behind_the_others(
    tmp_path: Path, dns: DnsServer, ca: trustme.CA
) -> None:
    events = Log()
    with ScriptedHttps(tmp_path, GOOD_HOSTS[:2], "web", events=events, ca=ca) as web:
        cfg = _config(tmp_path, dns, ca, delivery_lanes=1)
        conn = state.connect(cfg.reporter.db)
        slow, fresh = web.url(GOOD_HOSTS[0]), web.url(GOOD_HOSTS[1])
        earlier = _add_report(conn, "slow.example", f"v=TLSRPTv1; rua={slow}")
        state.add_destinations(conn, earlier, [(slow, "pending", "")], 1000.0)
        # Its last attempt ran into the deadline; it is due before the other one.
        state.set_delivery(conn, earlier, slow, state="failed-retrying", error_kind="timeout")
        later = _add_report(conn, "fresh.example", f"v=TLSRPTv1; rua={fresh}")
        state.add_destinations(conn, later, [(fresh, "pending", "")], 2000.0)
        _send(_sender(cfg), conn)
        conn.close()
    requests = [e for e in events.entries if "request" in e]
    assert requests == [
        f"web: request {GOOD_HOSTS[1]}:{web.port}/v1/tlsrpt",
        f"web: request {GOOD_HOSTS[0]}:{web.port}/v1/tlsrpt",
    ]


def test_after_a_timeout_the_rest_of_that_hosts_deliveries_wait_for_its_next_attempt(
    tmp_path: Path, dns: DnsServer, ca: trustme.CA
) -> None:
    with ScriptedHttps(tmp_path, ("slow.test",), "slow", trickle=0.2, ca=ca) as slow:
        cfg = _config(tmp_path, dns, ca, attempt_deadline=1.5)
        conn = state.connect(cfg.reporter.db)
        for n in range(3):
            _add_report(conn, f"s{n}.example", f"v=TLSRPTv1; rua={slow.url('slow.test')}")
        summary = _send(_sender(cfg), conn)
        rows = _rows(conn)
        conn.close()
    assert len(slow.requests) == 1, "one deadline per hanging host and pass, not one per report"
    assert (summary.attempted, summary.retrying, summary.postponed) == (1, 1, 2)
    (tried,) = [row for row in rows if row["attempts"] == 1]
    waiting = [row for row in rows if row["attempts"] == 0]
    assert {row["next_attempt"] for row in waiting} == {tried["next_attempt"]}
    assert {row["state"] for row in waiting} == {"pending"}
