"""The answers a pass keeps (deliver.dns_cache): addresses and MX records for their TTL (at most
five minutes) and until the next pass, never a TLSRPT or DKIM record. Pure with a clock of the
test's own, then through the resolver against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import ipaddress

import dns.name
import dns.rdatatype
from rigs.dnsserver import DnsServer

from tlsrpt_reporter.config.schema import DnsSettings
from tlsrpt_reporter.deliver.dns_cache import KEEP_AT_MOST, KEEP_NO_RECORDS, AnswerCache
from tlsrpt_reporter.deliver.resolver import Resolver

NAME = dns.name.from_text("reports.example.")
A = dns.rdatatype.A
TXT = dns.rdatatype.TXT


def test_an_answer_is_kept_for_its_ttl_and_at_most_five_minutes() -> None:
    now = [1000.0]
    cache: AnswerCache[str] = AnswerCache(lambda: now[0])
    cache.put(NAME, A, "short", 30)
    now[0] += 29
    assert cache.get(NAME, A) == "short"
    now[0] += 1
    assert cache.get(NAME, A) is None
    cache.put(NAME, A, "long", 86400)
    now[0] += KEEP_AT_MOST - 1
    assert cache.get(NAME, A) == "long"
    now[0] += 1
    assert cache.get(NAME, A) is None


def test_no_records_is_kept_a_minute_a_zero_ttl_not_at_all_and_txt_never() -> None:
    now = [0.0]
    cache: AnswerCache[str] = AnswerCache(lambda: now[0])
    cache.put(NAME, dns.rdatatype.AAAA, "nodata", None)
    cache.put(NAME, A, "zero", 0)
    cache.put(NAME, TXT, "v=TLSRPTv1; rua=mailto:a@example", 3600)
    assert cache.get(NAME, A) is None
    assert cache.get(NAME, TXT) is None
    now[0] += KEEP_NO_RECORDS - 1
    assert cache.get(NAME, dns.rdatatype.AAAA) == "nodata"
    cache.clear()
    assert cache.get(NAME, dns.rdatatype.AAAA) is None


def test_the_resolver_asks_for_a_hosts_addresses_once_a_pass_and_for_records_every_time() -> None:
    zone = {
        "reports.example": [("A", "192.0.2.7")],
        "example.com": [("MX", "10 mx.example.com.")],
        "_smtp._tls.example.com": [("TXT", '"v=TLSRPTv1; rua=mailto:t@example.com"')],
    }
    with DnsServer(zone) as server:
        resolver = Resolver(DnsSettings(nameservers=("127.0.0.1",), port=server.port))

        async def a_pass() -> None:
            for _ in range(3):
                assert await resolver.addresses("reports.example") == [
                    ipaddress.ip_address("192.0.2.7")
                ]
                assert await resolver.mx_hosts("example.com") == ["mx.example.com"]
                assert (await resolver.lookup_tlsrpt("example.com")).status == "found"

        asyncio.run(a_pass())
        # AAAA: NODATA, kept too (most report hosts have no IPv6 address).
        assert len(server.asked("reports.example", "A")) == 1
        assert len(server.asked("reports.example", "AAAA")) == 1
        assert len(server.asked("example.com", "MX")) == 1
        assert len(server.asked("_smtp._tls.example.com", "TXT")) == 3  # RFC 8460 §3
        resolver.new_pass()
        asyncio.run(resolver.addresses("reports.example"))
        assert len(server.asked("reports.example", "A")) == 2
