"""A safe first week, end to end with the real CLI and real servers: ``reporter.redirect`` sends
every report to the operator instead of its rua (mail through the real SMTP relay, DKIM checked
against the real DNS test server; or files in a directory), and ``sign_by = "relay"`` composes
the mail unsigned for the relay's signer."""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import re
import sqlite3
from typing import Any

import dkim as dkimpy
import dns.message
import dns.query
import dns.rdatatype
from support.site import SUBMITTER, Site

from tlsrpt_reporter.report import schema

OPS = "ops@example.net"
SELECTOR_NAME = f"tlsrpt._domainkey.{SUBMITTER}"
REDIRECT_NOTE = f"redirected to mailto:{OPS} (reporter.redirect)"


def configured(site: Site, *, reporter: str = "", mail: str = "", keys: bool = True) -> None:
    """Rewrite the site's configuration: ``reporter`` lines into [reporter], ``mail`` lines into
    [reporter.mail]; without ``keys`` no [[reporter.mail.dkim]] table. The DKIM record is left
    out of the file: the reporter looks it up in the DNS test server, where it is published."""
    text = site.config.read_text()
    text = text.replace("never_report = [", f"{reporter}\nnever_report = [", 1)
    text = re.sub(r'(relay = "127\.0\.0\.1:\d+")', rf"\1\n{mail}", text, count=1)
    text = re.sub(r'record = "[^"]*"\n', "", text)
    if not keys:
        text = re.sub(r"\[\[reporter\.mail\.dkim\]\]\n(?:\w+ = .*\n)+", "", text)
    site.config.write_text(text)
    site.dns.zone[SELECTOR_NAME] = [("TXT", _zone_text(site.record))]


def _zone_text(record: str) -> str:
    return " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))


def verify_through_dns(site: Site, raw: bytes) -> bool:
    """dkimpy in strict tlsrpt mode, the key record asked of the real DNS test server."""

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        query = dns.message.make_query(name.decode(), dns.rdatatype.TXT)
        answer = dns.query.udp(query, "127.0.0.1", timeout=5, port=site.dns.port)
        for rrset in answer.answer:
            for rdata in rrset:
                return b"".join(rdata.strings)
        return None

    return bool(dkimpy.verify(raw, dnsfunc=dnsfunc, tlsrpt="strict"))


def deliveries(site: Site) -> dict[str, list[tuple[str, str, str]]]:
    """Each report domain's delivery rows: (destination, state, detail), in stored order."""
    conn = sqlite3.connect(site.reporter_db)
    rows = conn.execute(
        "SELECT report.domain, delivery.destination, delivery.state, delivery.detail"
        " FROM delivery JOIN report ON report.id = delivery.report ORDER BY delivery.rowid"
    ).fetchall()
    conn.close()
    found: dict[str, list[tuple[str, str, str]]] = {}
    for domain, destination, state, detail in rows:
        found.setdefault(domain, []).append((destination, state, detail))
    return found


def parsed(raw: bytes) -> Any:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_a_mailto_redirect_sends_every_report_to_the_operator_signed_and_says_where_from(
    site: Site,
) -> None:
    configured(site, reporter=f'redirect = "mailto:{OPS}"')
    result = site.cli("send", "--now")
    assert result.returncode == 0, result.stderr
    assert site.web.requests == [], "no report reaches a published rua"
    assert {tuple(m.rcpt_tos) for m in site.smtp.messages} == {(OPS,)}
    subjects = {}
    for message in site.smtp.messages:
        msg = parsed(message.data)
        assert msg["To"] == OPS
        assert verify_through_dns(site, message.data), msg["Subject"]
        subjects[msg["TLS-Report-Domain"]] = str(msg["Subject"])
    # mail.example's rua came with the datagram, dns.example's from DNS, web.example's is https;
    # evil.example's https rua (a private address) would have been refused, so it reaches us.
    assert set(subjects) == {"mail.example", "dns.example", "web.example", "evil.example"}
    assert subjects["mail.example"].startswith(
        "[redirected from mailto:tlsrpt@mail.example] Report Domain: mail.example Submitter: "
        f"{SUBMITTER} Report-ID: <"
    )
    assert subjects["web.example"].startswith(f"[redirected from {site.web.url()}] ")
    assert subjects["dns.example"].startswith("[redirected from mailto:tls@dns.example] ")
    # The records say where each report went and where it would have gone.
    rows = deliveries(site)
    assert rows["mail.example"][0] == ("mailto:tlsrpt@mail.example", "skipped", REDIRECT_NOTE)
    assert rows["mail.example"][1][:2] == (f"mailto:{OPS}", "sent")
    assert rows["web.example"][0] == (site.web.url(), "skipped", REDIRECT_NOTE)
    # The key record came from the DNS test server, for the reporter's start-up check and ours.
    assert any(q.name == SELECTOR_NAME for q in site.dns.queries)
    # Delivered is delivered: a second pass sends nothing again.
    assert site.cli("send", "--now").returncode == 0
    assert len(site.smtp.messages) == 4


def test_a_dir_redirect_writes_each_report_and_its_mail_and_counts_it_delivered(
    site: Site,
) -> None:
    out = site.tmp / "redirected"
    configured(site, reporter=f'redirect = "dir:{out}"')
    result = site.cli("send", "--now")
    assert result.returncode == 0, result.stderr
    assert site.smtp.messages == [] and site.web.requests == []
    reports = sorted(out.glob("*.json.gz"))
    assert len(reports) == 4
    for path in reports:
        schema.validate(json.loads(gzip.decompress(path.read_bytes())))
        eml = path.with_name(path.name.removesuffix(".json.gz") + ".eml").read_bytes()
        assert verify_through_dns(site, eml)
        assert str(parsed(eml)["Subject"]).startswith("[redirected from ")
        assert path.stat().st_mode & 0o777 == 0o640
    mail_eml = next(out.glob(f"{SUBMITTER}!mail.example!*.eml")).read_bytes()
    assert parsed(mail_eml)["To"] == "tlsrpt@mail.example"  # as the receiver would have had it
    rows = deliveries(site)
    destination, state, detail = rows["mail.example"][-1]
    assert (destination, state) == (f"dir:{out}", "sent")
    assert detail.startswith(f"written to {out}: {SUBMITTER}!mail.example!")
    status = json.loads(site.cli("status", "--json").stdout)[0]
    assert status["reports"]["delivered"] == 4


def test_sign_by_relay_sends_mail_without_a_signature_of_ours(site: Site) -> None:
    configured(site, mail='sign_by = "relay"', keys=False)
    result = site.cli("send", "--now")
    assert result.returncode == 0, result.stderr
    assert {m.rcpt_tos[0] for m in site.smtp.messages} == {
        "tlsrpt@mail.example",
        "tls@dns.example",
    }
    for message in site.smtp.messages:
        assert b"DKIM-Signature" not in message.data
        assert parsed(message.data)["TLS-Report-Submitter"] == SUBMITTER


def test_check_config_with_sign_by_relay_says_what_it_cannot_check_and_the_caveat(
    site: Site,
) -> None:
    configured(site, mail='sign_by = "relay"', keys=False)
    result = site.cli("check-config")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    (unchecked,) = [line for line in lines if "check-config cannot see" in line]
    assert unchecked.startswith("note     DKIM: the relay 127.0.0.1:")
    assert f"signs as the submitter {SUBMITTER}" in unchecked
    (caveat,) = [line for line in lines if "s=tlsrpt" in line]
    assert caveat == (
        "warning  DKIM: a receiver may discard reports whose signing key lacks s=tlsrpt (RFC "
        f"8460 §5.3): the relay's key for {SUBMITTER} should carry it (a selector of its own "
        f"for mail from tlsrpt-noreply@{SUBMITTER}, so that the domain's other mail keeps its "
        "usual key)"
    )
    assert not [line for line in lines if line.startswith(("missing", "error"))]
