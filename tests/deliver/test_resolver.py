"""The resolver against a real DNS server on loopback (tests/dnsserver.py); no real DNS."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rigs.dnsserver import DnsServer

from tlsrpt_reporter.config.schema import DnsSettings
from tlsrpt_reporter.deliver.resolver import (
    DnsError,
    DnsTemporaryError,
    LookupResult,
    Resolver,
)
from tlsrpt_reporter.errors import TlsRptError

TIMEOUT = 0.5
RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer() as srv:
        yield srv


@pytest.fixture
def resolver(server: DnsServer) -> Resolver:
    return Resolver(DnsSettings(nameservers=("127.0.0.1",), port=server.port, timeout=TIMEOUT))


def lookup(resolver: Resolver, domain: str) -> LookupResult:
    return asyncio.run(resolver.lookup_tlsrpt(domain))


def txt(text: str) -> tuple[str, str]:
    """A TXT record of one character-string."""
    return ("TXT", f'"{text}"')


# --- lookup_tlsrpt ------------------------------------------------------------------------------


def test_single_valid_record_is_found(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"_smtp._tls.example.com": [txt(RECORD)]}
    result = lookup(resolver, "example.com")
    assert (result.status, result.record) == ("found", RECORD)
    assert server.asked("_smtp._tls.example.com", "TXT")


def test_domain_spelling_is_normalised_before_the_query(
    server: DnsServer, resolver: Resolver
) -> None:
    server.zone = {"_smtp._tls.xn--bcher-kva.example": [txt(RECORD)]}
    assert lookup(resolver, "Bücher.Example.").status == "found"
    assert lookup(resolver, "XN--BCHER-KVA.example").status == "found"


def test_two_tlsrpt_records_mean_none(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {
        "_smtp._tls.example.com": [txt(RECORD), txt("v=TLSRPTv1; rua=mailto:other@example.com")]
    }
    result = lookup(resolver, "example.com")
    assert (result.status, result.record) == ("none", None)
    assert "2 TLSRPT records" in result.detail


def test_record_split_into_strings_is_joined_without_separator(
    server: DnsServer, resolver: Resolver
) -> None:
    server.zone = {
        "_smtp._tls.example.com": [
            ("TXT", '"v=TLSRPTv1;" "rua=mailto:tls" "rpt@example.com," "https://r.example/x"')
        ]
    }
    result = lookup(resolver, "example.com")
    assert result.record == "v=TLSRPTv1;rua=mailto:tlsrpt@example.com,https://r.example/x"


def test_several_rua_fields_arrive_intact(server: DnsServer, resolver: Resolver) -> None:
    text = "v=TLSRPTv1; rua=mailto:a@example.com; ext=1; rua=https://r.example/%2C"
    server.zone = {"_smtp._tls.example.com": [txt(text)]}
    assert lookup(resolver, "example.com").record == text


def test_other_txt_records_beside_the_tlsrpt_one_are_ignored(
    server: DnsServer, resolver: Resolver
) -> None:
    server.zone = {"_smtp._tls.example.com": [txt("v=spf1 -all"), txt(RECORD), txt("v=TLSRPTv1")]}
    result = lookup(resolver, "example.com")
    assert (result.status, result.record) == ("found", RECORD)


def test_only_non_tlsrpt_txt_records_mean_none(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"_smtp._tls.example.com": [txt("hello"), txt("v=TLSRPTv2; rua=x")]}
    result = lookup(resolver, "example.com")
    assert result.status == "none"
    assert "none of its 2 TXT records" in result.detail


def test_invalid_utf8_is_replaced_not_fatal(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {
        "_smtp._tls.example.com": [("TXT", '"v=TLSRPTv1; rua=mailto:a@example.com\\255"')]
    }
    result = lookup(resolver, "example.com")
    assert result.status == "found"
    assert result.record == "v=TLSRPTv1; rua=mailto:a@example.com\ufffd"


def test_large_record_is_fetched_over_tcp(server: DnsServer, resolver: Resolver) -> None:
    # Larger than the 1232-byte EDNS buffer: the UDP answer is truncated, TCP brings it whole.
    uris = ",".join(f"mailto:reports-{i:03d}@example.com" for i in range(60))
    text = f"v=TLSRPTv1; rua={uris}"
    strings = " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))
    server.zone = {"_smtp._tls.example.com": [("TXT", strings)]}
    result = lookup(resolver, "example.com")
    assert result.record == text
    transports = [q.transport for q in server.asked("_smtp._tls.example.com")]
    assert transports == ["udp", "tcp"]


def test_truncated_answer_is_retried_over_tcp(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"_smtp._tls.example.com": [txt(RECORD)]}
    server.truncate = {"_smtp._tls.example.com"}
    assert lookup(resolver, "example.com").record == RECORD
    assert [q.transport for q in server.queries] == ["udp", "tcp"]


def test_cname_to_a_hosted_record_is_followed(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {
        "_smtp._tls.example.com": [("CNAME", "example-com.tlsrpt.provider.example.")],
        "example-com.tlsrpt.provider.example": [txt(RECORD)],
    }
    assert lookup(resolver, "example.com").record == RECORD


def test_servfail_is_temporary(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"_smtp._tls.example.com": [txt(RECORD)]}
    server.servfail = {"_smtp._tls.example.com"}
    result = lookup(resolver, "example.com")
    assert (result.status, result.record) == ("temporary", None)
    assert "SERVFAIL" in result.detail


def test_nxdomain_is_none(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"_smtp._tls.other.example": [txt(RECORD)]}
    result = lookup(resolver, "example.com")
    assert (result.status, result.record) == ("none", None)
    assert "NXDOMAIN" in result.detail


def test_nodata_is_none(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"_smtp._tls.example.com": [("A", "192.0.2.1")]}
    result = lookup(resolver, "example.com")
    assert (result.status, result.record) == ("none", None)
    assert "NODATA" in result.detail


def test_empty_non_terminal_is_none(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"deeper._smtp._tls.example.com": [txt(RECORD)]}
    result = lookup(resolver, "example.com")
    assert result.status == "none"
    assert "NODATA" in result.detail


def test_dropped_query_is_temporary_within_the_timeout(
    server: DnsServer, resolver: Resolver
) -> None:
    server.zone = {"_smtp._tls.example.com": [txt(RECORD)]}
    server.drop = {"_smtp._tls.example.com"}
    started = time.monotonic()
    result = lookup(resolver, "example.com")
    elapsed = time.monotonic() - started
    assert (result.status, result.record) == ("temporary", None)
    assert f"{TIMEOUT:g}s" in result.detail
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + 0.5
    assert server.asked("_smtp._tls.example.com")


def test_unreachable_nameserver_is_temporary() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there any more: the kernel answers "port unreachable".
    resolver = Resolver(DnsSettings(nameservers=("127.0.0.1",), port=port, timeout=TIMEOUT))
    result = lookup(resolver, "example.com")
    assert (result.status, result.record) == ("temporary", None)


@pytest.mark.parametrize(
    "domain", ["", ".", "a..example", "exa mple.com", "-a.example", "a" * 64 + ".example",
               ".".join(["a" * 60] * 5), "a\nb.example"],
)  # fmt: skip
def test_invalid_domain_is_none_without_a_query(
    server: DnsServer, resolver: Resolver, domain: str
) -> None:
    result = lookup(resolver, domain)
    assert (result.status, result.record) == ("none", None)
    assert "not" in result.detail
    assert server.queries == []


def test_name_too_long_with_the_prefix_is_none(server: DnsServer, resolver: Resolver) -> None:
    domain = ".".join(["a" * 61] * 4)  # 247 characters: valid, but not under _smtp._tls.
    result = lookup(resolver, domain)
    assert result.status == "none"
    assert "not a valid DNS name" in result.detail
    assert server.queries == []


# --- addresses ----------------------------------------------------------------------------------


def addresses(resolver: Resolver, host: str) -> list[Any]:
    return asyncio.run(resolver.addresses(host))


def test_addresses_ipv4_then_ipv6(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {
        "reports.example": [
            ("AAAA", "2001:db8::2"),
            ("A", "192.0.2.1"),
            ("A", "192.0.2.2"),
        ]
    }
    found = addresses(resolver, "Reports.Example")
    assert found[2:] == [ipaddress.IPv6Address("2001:db8::2")]
    assert sorted(found[:2]) == [
        ipaddress.IPv4Address("192.0.2.1"),
        ipaddress.IPv4Address("192.0.2.2"),
    ]
    assert {q.rdtype for q in server.queries} == {"A", "AAAA"}


def test_addresses_ipv6_only(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"reports.example": [("AAAA", "2001:db8::2")]}
    assert addresses(resolver, "reports.example") == [ipaddress.IPv6Address("2001:db8::2")]


def test_addresses_nxdomain_and_nodata_are_empty(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"reports.example": [txt("no address here")]}
    assert addresses(resolver, "reports.example") == []
    assert addresses(resolver, "missing.example") == []
    assert len(server.queries) == 4


def test_addresses_servfail_raises_temporary(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"reports.example": [("A", "192.0.2.1")]}
    server.servfail = {"reports.example"}
    with pytest.raises(DnsTemporaryError, match="SERVFAIL") as info:
        addresses(resolver, "reports.example")
    assert isinstance(info.value, TlsRptError)


def test_addresses_timeout_raises_temporary(server: DnsServer, resolver: Resolver) -> None:
    server.drop = {"reports.example"}
    started = time.monotonic()
    with pytest.raises(DnsTemporaryError, match="no answer within"):
        addresses(resolver, "reports.example")
    # A and AAAA are asked together: one timeout, not two.
    assert time.monotonic() - started < TIMEOUT * 2


def test_addresses_of_an_ip_literal_need_no_query(server: DnsServer, resolver: Resolver) -> None:
    assert addresses(resolver, "192.0.2.9") == [ipaddress.IPv4Address("192.0.2.9")]
    assert addresses(resolver, "[2001:db8::9]") == [ipaddress.IPv6Address("2001:db8::9")]
    assert server.queries == []


def test_addresses_of_an_invalid_name_are_empty(server: DnsServer, resolver: Resolver) -> None:
    assert addresses(resolver, "bad name.example") == []
    assert server.queries == []


# --- mx_hosts -----------------------------------------------------------------------------------


def mx_hosts(resolver: Resolver, domain: str) -> list[str]:
    return asyncio.run(resolver.mx_hosts(domain))


def test_mx_hosts_sorted_by_preference(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {
        "example.com": [
            ("MX", "30 backup.example.net."),
            ("MX", "10 MX1.example.com."),
            ("MX", "20 mx2.example.com."),
        ]
    }
    assert mx_hosts(resolver, "example.com") == [
        "mx1.example.com",
        "mx2.example.com",
        "backup.example.net",
    ]


def test_mx_hosts_equal_preference_are_all_returned(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {
        "example.com": [("MX", "10 a.example.com."), ("MX", "10 b.example.com."), ("MX", "5 c.x.")]
    }
    hosts = mx_hosts(resolver, "example.com")
    assert hosts[0] == "c.x"
    assert sorted(hosts[1:]) == ["a.example.com", "b.example.com"]


def test_mx_hosts_implicit_mx(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"Example.com": [("A", "192.0.2.1")]}
    assert mx_hosts(resolver, "EXAMPLE.com.") == ["example.com"]


def test_mx_hosts_null_mx_means_no_mail(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"example.com": [("MX", "0 ."), ("A", "192.0.2.1")]}
    assert mx_hosts(resolver, "example.com") == []


def test_mx_hosts_nxdomain_means_no_mail(server: DnsServer, resolver: Resolver) -> None:
    assert mx_hosts(resolver, "missing.example") == []
    assert server.asked("missing.example", "MX")


def test_mx_hosts_servfail_raises_temporary(server: DnsServer, resolver: Resolver) -> None:
    server.servfail = {"example.com"}
    with pytest.raises(DnsTemporaryError, match=r"example\.com MX"):
        mx_hosts(resolver, "example.com")


# --- txt ----------------------------------------------------------------------------------------


def test_txt_returns_the_one_record_joined(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"sel._domainkey.example.com": [("TXT", '"v=DKIM1; s=tlsrpt; " "p=AAAA"')]}
    assert asyncio.run(resolver.txt("sel._domainkey.example.com")) == "v=DKIM1; s=tlsrpt; p=AAAA"
    assert asyncio.run(resolver.txt("none._domainkey.example.com")) == ""


def test_txt_several_records_is_an_error(server: DnsServer, resolver: Resolver) -> None:
    server.zone = {"sel._domainkey.example.com": [txt("one"), txt("two")]}
    with pytest.raises(DnsError, match="2 TXT records"):
        asyncio.run(resolver.txt("sel._domainkey.example.com"))


def test_system_configuration_is_used_when_no_nameserver_is_set(
    server: DnsServer, tmp_path: Path
) -> None:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("search corp.example\noptions ndots:5\nnameserver 127.0.0.1\n")
    server.zone = {"_smtp._tls.example.com": [txt(RECORD)]}
    resolver = Resolver(DnsSettings(port=server.port, timeout=TIMEOUT), str(resolv_conf))
    assert resolver.nameservers == ("127.0.0.1",)
    assert lookup(resolver, "example.com").record == RECORD
    # The search list is never applied: one absolute question, nothing under corp.example.
    assert [q.name for q in server.queries] == ["_smtp._tls.example.com"]


def test_unreadable_system_configuration_falls_back_to_loopback(
    server: DnsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.zone = {"_smtp._tls.example.com": [txt(RECORD)]}
    missing = tmp_path / "no-resolv.conf"
    with caplog.at_level(logging.WARNING, logger="tlsrpt-reporter"):
        resolver = Resolver(DnsSettings(port=server.port, timeout=TIMEOUT), str(missing))
    assert resolver.nameservers == ("127.0.0.1",)
    assert str(missing) in caplog.text and "dns.nameservers" in caplog.text
    assert lookup(resolver, "example.com").record == RECORD


def test_configured_nameservers_override_the_system(server: DnsServer, tmp_path: Path) -> None:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("nameserver 192.0.2.1\n")
    settings = DnsSettings(nameservers=("127.0.0.1",), port=server.port, timeout=TIMEOUT)
    assert Resolver(settings, str(resolv_conf)).nameservers == ("127.0.0.1",)
