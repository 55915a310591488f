"""Scheduling decisions (pure) and the give-up rules of the sender, with an injected clock."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rigs.dnsserver import DnsServer
from support.lines import STS, TLSA_FAILURE, line, tlsa
from support.site import DAY, Site

from tlsrpt_reporter.config.schema import DnsSettings, HttpsSettings, MailConfig, ReporterConfig
from tlsrpt_reporter.deliver.resolver import Resolver
from tlsrpt_reporter.deliver.sender import Sender
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import reports as state


@pytest.fixture
def site(any_site: Site) -> Site:
    """Every test here runs with both state databases: SQLite and PostgreSQL."""
    return any_site


def test_send_times_fill_the_window_evenly() -> None:
    rng = random.Random(1)
    times = timing.send_times(1000, 10_000.0, 14_400.0, rng)
    assert len(times) == 1000
    assert all(10_000.0 <= t < 24_400.0 for t in times)
    # Flat load: every quarter of the window gets a quarter of the reports.
    quarters = [sum(1 for t in times if 10_000 + q * 3600 <= t < 10_000 + (q + 1) * 3600)
                for q in range(4)]  # fmt: skip
    assert quarters == [250, 250, 250, 250]
    assert times != sorted(times), "the order is random, not by domain"
    assert timing.send_times(0, 0.0, 10.0, rng) == []


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(2)
    first = [timing.backoff(1, rng) for _ in range(200)]
    assert all(45 <= b <= 75 for b in first)
    assert len({round(b, 3) for b in first}) > 100, "jitter spreads retries"
    assert all(180 <= timing.backoff(3, rng) <= 300 for _ in range(50))
    assert all(timing.backoff(30, rng) <= 4 * 3600 * 1.25 for _ in range(50))


def test_a_day_is_due_only_after_it_ended_plus_grace_and_once() -> None:
    end = timing.day_end("2026-03-01")
    assert end == 1_772_409_600.0  # 2026-03-02T00:00:00Z
    built: set[str] = set()
    assert timing.due_days(["2026-03-01"], built.__contains__, end + 1799, 1800) == []
    assert timing.due_days(["2026-03-01"], built.__contains__, end + 1800, 1800) == ["2026-03-01"]
    built.add("2026-03-01")
    assert timing.due_days(["2026-03-01"], built.__contains__, end + 9999, 1800) == []


def test_the_record_seen_last_is_the_one_used() -> None:
    records = {("a.example", "v=TLSRPTv1; rua=mailto:old@a.example"): 100.0,
               ("a.example", "v=TLSRPTv1; rua=mailto:new@a.example"): 200.0,
               ("a.example", ""): 300.0,
               ("b.example", "v=TLSRPTv1; rua=mailto:b@b.example"): 400.0}  # fmt: skip
    assert schedule.choose_record(records, "a.example") == "v=TLSRPTv1; rua=mailto:new@a.example"
    assert schedule.choose_record(records, "c.example") == ""


PROVIDER = "mx.provider.example"
PROVIDER_RECORD = "v=TLSRPTv1; rua=mailto:tls@provider.example"


def _day_data(provider_is_a_recipient: bool = False) -> sources.DayData:
    """Two customers whose MX is PROVIDER (DANE), one with an MTA-STS policy as well."""
    data = sources.DayData(
        lines=[
            line("a.example", policy=tlsa(PROVIDER), ok=5, failed=2, details=[TLSA_FAILURE]),
            line("a.example", ok=3),
            line("b.example", policy=tlsa(PROVIDER), ok=1),
            line("b.example", policy={**STS, "policy-domain": "b.example"}, ok=4),
        ],
        records={("a.example", "v=TLSRPTv1; rua=mailto:r@a.example"): 1.0,
                 ("b.example", "v=TLSRPTv1; rua=mailto:r@b.example"): 1.0},
    )  # fmt: skip
    if provider_is_a_recipient:
        # The provider's own domain is its MX too, and it sends mail elsewhere by MTA-STS.
        data.lines += [
            line(PROVIDER, policy=tlsa(PROVIDER), ok=10, record=PROVIDER_RECORD),
            line(PROVIDER, policy={**STS, "policy-domain": PROVIDER}, ok=2, record=PROVIDER_RECORD),
        ]
        data.records[(PROVIDER, PROVIDER_RECORD)] = 1.0
    return data


def _built(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """domain -> (record, the report's policies keyed by policy type)."""
    return {
        row["domain"]: {
            "record": row["record"],
            "policies": {p["policy"]["policy-type"]: p for p in row["built"].document["policies"]},
        }
        for row in rows
    }


def _config(**values: Any) -> ReporterConfig:
    return ReporterConfig(organization_name="Org", contact_info="tlsrpt@example.net", **values)


def test_an_mx_host_gets_a_report_of_the_dane_policies_naming_it(tmp_path: Path) -> None:
    rows, result = schedule.build_reports(
        _config(), DAY, _day_data(), 1_772_500_000.0, instance="a1"
    )
    built = _built(rows)
    assert sorted(built) == ["a.example", "b.example", PROVIDER]
    assert result.reports == 3 and result.host_reports == 1
    host = built[PROVIDER]
    assert host["record"] == "", "looked up at _smtp._tls.<mx host> when sending"
    assert list(host["policies"]) == ["tlsa"], "never the MTA-STS or no-policy-found ones"
    assert host["policies"]["tlsa"]["summary"] == {
        "total-successful-session-count": 6,
        "total-failure-session-count": 2,
    }
    assert host["policies"]["tlsa"]["failure-details"] == [TLSA_FAILURE]
    # The recipient domains' own reports are unchanged.
    assert set(built["a.example"]["policies"]) == {"tlsa", "no-policy-found"}
    assert built["a.example"]["record"] == "v=TLSRPTv1; rua=mailto:r@a.example"
    for row in rows:
        row["send_at"] = 0.0
    state.insert_day(state.connect(tmp_path / "state.sqlite"), DAY, 0.0, rows)


def test_an_mx_host_that_is_a_recipient_domain_gets_one_report_with_both(tmp_path: Path) -> None:
    data = _day_data(provider_is_a_recipient=True)
    rows, result = schedule.build_reports(_config(), DAY, data, 1_772_500_000.0, instance="a1")
    assert [row["domain"] for row in rows].count(PROVIDER) == 1
    host = _built(rows)[PROVIDER]
    assert host["record"] == PROVIDER_RECORD, "its own record, as the MTA saw it"
    assert set(host["policies"]) == {"tlsa", "sts"}
    # Its own 10 sessions once, plus a.example's 5 and b.example's 1.
    assert host["policies"]["tlsa"]["summary"]["total-successful-session-count"] == 16
    assert host["policies"]["tlsa"]["summary"]["total-failure-session-count"] == 2
    assert result.host_reports == 0
    for row in rows:
        row["send_at"] = 0.0
    # UNIQUE (day, domain) in the state database: a second report would not even be stored.
    state.insert_day(state.connect(tmp_path / "state.sqlite"), DAY, 0.0, rows)


def test_mx_host_reports_can_be_turned_off() -> None:
    cfg = _config(mx_host_reports=False)
    rows, result = schedule.build_reports(cfg, DAY, _day_data(), 1_772_500_000.0, instance="a1")
    assert [row["domain"] for row in rows] == ["a.example", "b.example"]
    assert result.host_reports == 0
    merged, _ = schedule.build_reports(cfg, DAY, _day_data(True), 1_772_500_000.0, instance="a1")
    host = _built(merged)[PROVIDER]
    assert host["policies"]["tlsa"]["summary"]["total-successful-session-count"] == 10


def test_never_report_applies_to_mx_hosts() -> None:
    cfg = _config(never_report=(PROVIDER,))
    rows, result = schedule.build_reports(cfg, DAY, _day_data(), 1_772_500_000.0, instance="a1")
    assert [row["domain"] for row in rows] == ["a.example", "b.example"]
    assert result.skipped == [PROVIDER] and result.host_reports == 0


def _sender(site_: Site, dns: DnsServer, clock: list[float], **cfg: object) -> Sender:
    config = ReporterConfig(
        organization_name="Org", contact_info="tlsrpt@example.net",
        mail=MailConfig(from_addr="r@example.net", relay=f"127.0.0.1:{site_.smtp.port}"),
        **cfg,  # type: ignore[arg-type]
    )  # fmt: skip
    resolver = Resolver(DnsSettings(nameservers=("127.0.0.1",), port=dns.port, timeout=1))
    return Sender(config, resolver, HttpsSettings(), [], clock=lambda: clock[0])


def test_a_dns_failure_that_lasts_past_retry_for_gives_the_report_up(site: Site) -> None:
    assert site.cli("send", "--now").returncode == 0
    conn = state.connect(site.reporter_db)
    clock = [time.time() + 100_000]  # more than retry_for after the first failure
    sender = _sender(site, site.dns, clock, retry_for=86_400.0)
    asyncio.run(sender.send_due(conn, force=True))
    status = dict(conn.execute("SELECT domain, status FROM report").fetchall())
    conn.close()
    assert status["servfail.example"] == "given-up"


def test_the_per_destination_cap_limits_what_one_rua_receives(site: Site) -> None:
    from support.site import session

    from tlsrpt_reporter.store import collected as store
    from tlsrpt_reporter.wire.aggregate import Aggregate
    from tlsrpt_reporter.wire.decode import decode

    shared = "v=TLSRPTv1; rua=mailto:inbox@shared.example"
    agg = Aggregate()
    for name in ("s1.example", "s2.example", "s3.example"):
        agg.add(DAY, 1_772_330_000.0, decode(session(name, shared)))
    conn = store.connect(site.collector_db)
    store.write(conn, store.build_batch(agg))
    conn.close()
    text = site.config.read_text().replace(
        "spread = 0", "spread = 0\nmax_reports_per_destination = 2"
    )
    site.config.write_text(text)
    assert site.cli("send", "--now").returncode == 0
    conn = state.connect(site.reporter_db)
    rows = conn.execute(
        "SELECT state, detail FROM delivery WHERE destination = 'mailto:inbox@shared.example'"
    ).fetchall()
    conn.close()
    assert sorted(st for st, _ in rows) == ["given-up", "sent", "sent"]
    assert [d for st, d in rows if st == "given-up"] == ["reporter.max_reports_per_destination"]
    assert sum(m.rcpt_tos == ["inbox@shared.example"] for m in site.smtp.messages) == 2


def test_run_builds_and_sends_then_stops_cleanly_on_sigterm(site: Site) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "run", "--config", str(site.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(site.smtp.messages) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(site.smtp.messages) == 2
    assert "reporter stopped" in err
    table = site.cli("status", "--day", DAY)
    assert table.returncode == 0
    assert DAY in table.stdout and "delivered" in table.stdout


def test_a_dkim_key_that_does_not_match_its_record_stops_mail_not_https(site: Site) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tlsrpt_reporter.deliver import dkim

    other = site.tmp / "other.pem"
    other.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    wrong = dkim.record_for(dkim.load_key(dkim.DkimKey("example.net", "tlsrpt", other)))
    site.config.write_text(site.config.read_text().replace(site.record, wrong))
    result = site.cli("send", "--now")
    assert result.returncode == 0, result.stderr
    assert "mail delivery is stopped" in result.stderr
    assert site.smtp.messages == [], "no mail is signed with a key its record does not match"
    assert len(site.web.requests) == 1, "HTTPS delivery goes on"
    pending = {d: st for d, (st, _) in site.deliveries().items()}
    assert pending["mail.example"] == "pending"


def test_delivered_once_one_destination_accepted_and_the_others_still_tried(
    site: Site,
) -> None:
    from support.site import session

    from tlsrpt_reporter.store import collected as store
    from tlsrpt_reporter.wire.aggregate import Aggregate
    from tlsrpt_reporter.wire.decode import decode

    both = f"v=TLSRPTv1; rua=mailto:two@both.example,{site.web.url()}"
    agg = Aggregate()
    agg.add(DAY, 1_772_330_000.0, decode(session("both.example", both)))
    conn = store.connect(site.collector_db)
    store.write(conn, store.build_batch(agg))
    conn.close()
    site.web.script(*[https_reply(500)] * 3, https_reply(200))
    assert site.cli("send", "--now").returncode == 0
    conn = state.connect(site.reporter_db)
    status = dict(conn.execute("SELECT domain, status FROM report").fetchall())
    rows = dict(conn.execute(
        "SELECT destination, state FROM delivery JOIN report ON report.id = delivery.report"
        " WHERE report.domain = 'both.example'").fetchall())  # fmt: skip
    conn.close()
    assert status["both.example"] == "delivered"
    assert rows["mailto:two@both.example"] == "sent"
    assert rows[site.web.url()] == "failed-retrying"
    for _ in range(3):
        assert site.cli("send", "--now").returncode == 0
    conn = state.connect(site.reporter_db)
    final = conn.execute(
        "SELECT state FROM delivery WHERE destination = ? AND report ="
        " (SELECT id FROM report WHERE domain = 'both.example')",
        (site.web.url(),),
    ).fetchone()
    conn.close()
    assert final == ("sent",)


def https_reply(status: int) -> object:
    from rigs.httpsserver import Reply

    return Reply(status)


def test_a_delivery_failing_past_retry_for_is_given_up(site: Site) -> None:
    import ipaddress

    site.web.script(*[https_reply(503)] * 10)
    assert site.cli("send", "--now").returncode == 0
    assert site.deliveries()["web.example"][0] == "failed-retrying"
    conn = state.connect(site.reporter_db)
    clock = [time.time() + 90_000]
    sender = _sender(site, site.dns, clock, retry_for=86_400.0)
    sender.https_settings = HttpsSettings(
        timeout=5.0,
        allow_private=(ipaddress.ip_network("127.0.0.0/8"),),
        ca_file=str(site.web.ca_file),
    )
    asyncio.run(sender.send_due(conn, force=True))
    conn.close()
    assert site.deliveries()["web.example"][0] == "given-up"
