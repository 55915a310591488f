"""Direct delivery against hostile DNS: a real DNS server answers MX and A records, a real SMTP
server listens on loopback; MX names are checked and MX addresses must be public unless allowed."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from rigs.dnsserver import DnsServer, Zone
from rigs.smtpserver import HOST, SmtpServer

from tlsrpt_reporter.config.schema import DnsSettings
from tlsrpt_reporter.deliver.resolver import Resolver
from tlsrpt_reporter.deliver.smtp import SendResult, SmtpDeliveryError, SmtpSettings, send

MESSAGE = b"From: a@example.net\r\nTo: b@good.example\r\nSubject: t\r\n\r\nreport\r\n"
ZONE: Zone = {
    "good.example": [("MX", "10 mx.good.example.")],
    "mx.good.example": [("A", HOST)],
    "bad.example": [("MX", "10 xn--zz-.bad.example.")],
    "odd.example": [("MX", "10 a\\000b.odd.example.")],
    "mixed.example": [("MX", "10 xn--zz-.mixed.example."), ("MX", "20 mx.good.example.")],
}


def _send(dns: DnsServer, server: SmtpServer, rcpts: list[str], allow: str = "") -> SendResult:
    resolver = Resolver(DnsSettings(nameservers=(HOST,), port=dns.port, timeout=2))
    settings = SmtpSettings(
        relay="direct",
        direct_port=server.port,
        helo_name="r.test",
        timeout=5,
        allow_private=(ipaddress.ip_network(allow),) if allow else (),
    )
    return asyncio.run(
        send(
            MESSAGE,
            "b@example.net",
            rcpts,
            settings,
            resolver.mx_hosts,
            resolve=resolver.addresses,
        )
    )


def test_an_mx_on_loopback_is_refused_without_allow_private() -> None:
    with DnsServer(ZONE) as dns, SmtpServer() as server:
        with pytest.raises(SmtpDeliveryError) as info:
            _send(dns, server, ["r@good.example"])
        assert server.connections == 0
    assert info.value.permanent is True
    assert "127.0.0.1 is loopback" in str(info.value)
    assert "reporter.mail.allow_private" in str(info.value)


def test_an_mx_on_loopback_is_used_when_allowed_and_the_checked_address_is_pinned() -> None:
    with DnsServer(ZONE) as dns, SmtpServer() as server:
        result = _send(dns, server, ["r@good.example"], allow="127.0.0.0/8")
        # One A lookup: the session connected to the address that passed, not the name again.
        asked = [q for q in dns.queries if q.name == "mx.good.example" and q.rdtype == "A"]
    assert result.route == "delivered to MX host mx.good.example (good.example)"
    assert len(server.messages) == 1
    assert len(asked) == 1


@pytest.mark.parametrize("domain", ["bad.example", "odd.example"])
def test_an_invalid_mx_name_is_a_one_line_permanent_failure(domain: str) -> None:
    with DnsServer(ZONE) as dns, SmtpServer() as server:
        with pytest.raises(SmtpDeliveryError) as info:
            _send(dns, server, [f"r@{domain}"], allow="127.0.0.0/8")
        assert server.connections == 0
    assert info.value.permanent is True
    assert "not a valid host name" in str(info.value)
    assert "\n" not in str(info.value)


def test_other_destinations_still_go_after_an_invalid_mx_name() -> None:
    with DnsServer(ZONE) as dns, SmtpServer() as server:
        result = _send(
            dns, server, ["r@bad.example", "r@good.example", "r@mixed.example"], allow="127.0.0.0/8"
        )
    assert set(result.accepted) == {"r@good.example", "r@mixed.example"}
    (refusal,) = result.refused
    assert refusal.recipient == "r@bad.example"
    assert refusal.permanent is True
    assert "not a valid host name" in refusal.reply
