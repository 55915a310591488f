"""The reporter end to end: real SMTP, HTTPS and DNS servers on loopback, the real CLI."""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import re
import signal
import subprocess
from typing import Any

import dkim as dkimpy
from rigs.httpsserver import Reply
from support.site import DAY, SUBMITTER, Site, sts

from tlsrpt_reporter.report import schema
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store.process_lock import ProcessLock
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode
from tlsrpt_reporter.wire.encode import datagram


def verify_dkim(message: bytes, record: str) -> bool:
    """dkimpy in strict tlsrpt mode, the record served through its DNS hook."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"tlsrpt._domainkey.{SUBMITTER}.".encode()
        return record.encode()

    return bool(dkimpy.verify(message, dnsfunc=dnsfunc, tlsrpt="strict"))


SUBJECT = re.compile(
    r"Report Domain: (?P<domain>\S+) Submitter: (?P<submitter>\S+) "
    r"Report-ID: <(?P<id>[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+)>"
)


def check_mail(raw: bytes, domain: str, record: str) -> dict[str, Any]:
    """Everything RFC 8460 §5.3 asks of a report mail; returns the report."""
    assert verify_dkim(raw, record)
    assert b" l=" not in raw.split(b"\r\n\r\n")[0] and b";l=" not in raw
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = SUBJECT.fullmatch(str(msg["Subject"]))
    assert subject, msg["Subject"]
    assert subject["domain"] == domain and subject["submitter"] == SUBMITTER
    assert msg["TLS-Report-Domain"] == domain
    assert msg["TLS-Report-Submitter"] == SUBMITTER
    assert msg["TLS-Required"] == "No"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    text, attachment = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert "Sessions:" in text.get_content()
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    assert attachment.get_filename().startswith(f"{SUBMITTER}!{domain}!")
    report = json.loads(gzip.decompress(attachment.get_payload(decode=True)))
    schema.validate(report)
    assert report["report-id"] == subject["id"]
    return dict(report)


def test_send_delivers_by_mail_and_https_retries_and_never_resends(site: Site) -> None:
    site.web.script(Reply(500), Reply(200))
    first = site.cli("send", "--now")
    assert first.returncode == 0, first.stderr
    # Mail: the datagram's record, and a record found in DNS (split into two strings).
    by_domain = {m.rcpt_tos[0]: m for m in site.smtp.messages}
    assert set(by_domain) == {"tlsrpt@mail.example", "tls@dns.example"}
    report = check_mail(by_domain["tlsrpt@mail.example"].data, "mail.example", site.record)
    (policy,) = report["policies"]
    assert policy["summary"] == {
        "total-successful-session-count": 1,
        "total-failure-session-count": 1,
    }
    assert policy["failure-details"][0]["result-type"] == "certificate-expired"
    check_mail(by_domain["tls@dns.example"].data, "dns.example", site.record)
    # HTTPS: the first answer was a 500, so it is retrying.
    assert len(site.web.requests) == 1
    request = site.web.requests[0]
    assert request.headers["content-type"] == "application/tlsrpt+gzip"
    schema.validate(json.loads(gzip.decompress(request.body)))
    assert site.deliveries()["web.example"] == ("failed-retrying", 1)
    # SSRF: a rua whose host resolves to a private address is refused, for good.
    assert site.deliveries()["evil.example"][0] == "given-up"
    # A temporary DNS failure postpones the report; it is not dropped.
    status, error = site.report_status()["servfail.example"]
    assert status == "pending" and error
    assert "never.example" not in site.report_status()

    second = site.cli("send", "--now")
    assert second.returncode == 0, second.stderr
    assert len(site.web.requests) == 2
    assert site.deliveries()["web.example"] == ("sent", 2)
    assert len(site.smtp.messages) == 2, "an accepted report is never sent again"

    third = site.cli("send", "--now")
    assert third.returncode == 0, third.stderr
    assert len(site.web.requests) == 2 and len(site.smtp.messages) == 2

    shown = json.loads(site.cli("status", "--json").stdout)
    (day,) = shown
    assert day["day"] == DAY
    assert day["reports"]["delivered"] == 3  # mail.example, dns.example, web.example
    assert day["deliveries"]["sent"] == 3


def test_parsedmarc_reads_our_report_mail(site: Site) -> None:
    import parsedmarc

    assert site.cli("send", "--now").returncode == 0
    raw = next(m.data for m in site.smtp.messages if m.rcpt_tos == ["tlsrpt@mail.example"])
    parsed = parsedmarc.parse_report_email(raw, offline=True)
    assert parsed["report_type"] == "smtp_tls"
    (policy,) = parsed["report"]["policies"]
    assert policy["policy_domain"] == "mail.example"
    assert policy["failed_session_count"] == 1


def test_a_crash_after_acceptance_resends_the_same_report_and_message_ids(site: Site) -> None:
    victim: list[subprocess.Popen[str]] = []

    def crash(received: Any) -> None:
        # The relay has the message; the reporter dies before it can record the acceptance.
        if len(site.smtp.messages) == 1:
            victim[0].send_signal(signal.SIGKILL)

    site.smtp.on_data = crash
    site.web.script(Reply(200))
    proc = site.popen_send()
    victim.append(proc)
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    # Deliveries to other hosts run in lanes of their own: another mail may be in too.
    assert len(site.smtp.messages) >= 1
    site.smtp.on_data = None
    again = site.cli("send", "--now")
    assert again.returncode == 0, again.stderr
    first = email.message_from_bytes(site.smtp.messages[0].data)
    copies = [
        email.message_from_bytes(m.data)
        for m in site.smtp.messages
        if m.rcpt_tos == site.smtp.messages[0].rcpt_tos
    ]
    assert len(copies) == 2, "the unrecorded acceptance is retried once"
    assert {c["Message-ID"] for c in copies} == {first["Message-ID"]}
    assert {c["Subject"] for c in copies} == {first["Subject"]}
    assert all(st == "sent" for st, _ in site.deliveries().values() if st != "given-up")


def test_only_one_reporter_works_on_a_state_database(site: Site) -> None:
    with ProcessLock(site.reporter_db):
        result = site.cli("send", "--now")
    assert result.returncode == 1
    assert "another tlsrpt-reporter process" in result.stderr
    assert site.smtp.messages == []


def test_without_an_identity_nothing_is_sent_and_check_config_says_why(site: Site) -> None:
    text = site.config.read_text()
    bare = site.tmp / "bare.toml"
    bare.write_text(text.split("[reporter.mail]")[0] + text.split("[reporter.https]", 1)[0][:0])
    result = site.cli("send", "--now", config=bare)
    assert result.returncode == 2
    assert "reporter.mail.from" in result.stderr and "reporter.mail.dkim" in result.stderr
    checked = site.cli("check-config", config=bare)
    assert checked.returncode == 2
    assert "missing" in checked.stdout and "reporter.mail.from" in checked.stdout
    assert site.smtp.messages == []


def test_check_config_accepts_the_complete_site(site: Site) -> None:
    result = site.cli("check-config")
    assert result.returncode == 0, result.stdout
    assert "DKIM tlsrpt._domainkey.example.net" in result.stdout
    # One s=tlsrpt key only: RFC 6376 verifiers ignore it, so DMARC needs a second key.
    assert "warning" in result.stdout and "DMARC" in result.stdout


def test_build_writes_reports_and_signed_mails_and_records_nothing(site: Site) -> None:
    out = site.tmp / "out"
    result = site.cli("build", "--day", DAY, "--out", str(out), "--db", str(site.collector_db))
    assert result.returncode == 0, result.stderr
    reports = sorted(p.name for p in out.glob("*.json.gz"))
    assert len(reports) == 5  # never.example is never reported to
    assert all(name.startswith(f"{SUBMITTER}!") for name in reports)
    for path in out.glob("*.json.gz"):
        schema.validate(json.loads(gzip.decompress(path.read_bytes())))
    eml = next(out.glob(f"{SUBMITTER}!mail.example!*.eml"))
    check_mail(eml.read_bytes(), "mail.example", site.record)
    assert not site.reporter_db.exists(), "a dry run writes no delivery state"
    assert site.smtp.messages == [] and site.web.requests == []


def dane(mx: str, failed: bool = False) -> dict[str, Any]:
    """A wire-form DANE policy: its policy domain is the MX host (RFC 8460 §1.1)."""
    policy: dict[str, Any] = {
        "policy-type": 1,
        "policy-domain": mx,
        "policy-string": ["3 1 1 " + "AB" * 32],
        "t": 0,
        "f": 0,
    }
    if failed:
        detail = {"c": 304, "s": "192.0.2.1", "n": mx, "r": "198.51.100.25"}
        policy |= {"failure-details": [detail], "t": 1, "f": 1}
    return policy


def test_an_mx_host_with_a_record_receives_the_dane_policies_naming_it(site: Site) -> None:
    provider, quiet = "mx.provider.example", "mx.quiet.example"
    site.dns.zone[f"_smtp._tls.{provider}"] = [
        ("TXT", '"v=TLSRPTv1; rua=mailto:tlsrpt@provider.example"')
    ]
    agg = Aggregate()
    for raw in [
        datagram("c1.example", [dane(provider)], "v=TLSRPTv1; rua=mailto:tls@c1.example"),
        datagram("c1.example", [dane(provider, True)], "v=TLSRPTv1; rua=mailto:tls@c1.example"),
        datagram("c2.example", [dane(provider)], "v=TLSRPTv1; rua=mailto:tls@c2.example"),
        # MTA-STS is no DANE policy: it stays out of the MX host's report.
        datagram("c2.example", [sts("c2.example") | {"t": 0, "f": 0}],
                 "v=TLSRPTv1; rua=mailto:tls@c2.example"),
        datagram("c3.example", [dane(quiet, True)], "v=TLSRPTv1; rua=mailto:tls@c3.example"),
    ]:  # fmt: skip
        agg.add(DAY, 1_772_330_000.0, decode(raw))
    conn = store.connect(site.collector_db)
    store.write(conn, store.build_batch(agg))
    conn.close()

    out = site.tmp / "out"
    built = site.cli("build", "--day", DAY, "--out", str(out), "--db", str(site.collector_db))
    assert built.returncode == 0, built.stderr
    assert "2 of them for MX hosts" in built.stdout
    (dry,) = out.glob(f"{SUBMITTER}!{provider}!*.json.gz")
    schema.validate(json.loads(gzip.decompress(dry.read_bytes())))

    result = site.cli("send", "--now")
    assert result.returncode == 0, result.stderr
    (mail,) = [m for m in site.smtp.messages if m.rcpt_tos == ["tlsrpt@provider.example"]]
    report = check_mail(mail.data, provider, site.record)
    (policy,) = report["policies"]
    assert policy["policy"] == {
        "policy-type": "tlsa",
        "policy-string": ["3 1 1 " + "AB" * 32],
        "policy-domain": provider,
    }
    assert policy["summary"] == {
        "total-successful-session-count": 2,
        "total-failure-session-count": 1,
    }
    assert [d["result-type"] for d in policy["failure-details"]] == ["tlsa-invalid"]
    # Each customer still gets its own report, the MTA-STS policy included.
    c2 = next(m for m in site.smtp.messages if m.rcpt_tos == ["tls@c2.example"])
    assert len(check_mail(c2.data, "c2.example", site.record)["policies"]) == 2
    # An MX host without a record: looked up, no report, and nothing to warn about.
    assert site.dns.asked(f"_smtp._tls.{quiet}", "TXT")
    assert site.report_status()[quiet][0] == "no-destination"
    assert not [m for m in site.smtp.messages if quiet in m.rcpt_tos[0]]
    loud = [line for line in result.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert loud, "the fixture's other domains do warn: the check below looks at the right place"
    assert not [line for line in loud if quiet in line]
