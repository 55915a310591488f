"""The address rule for report destinations (tlsrpt_reporter.deliver.addresses), pure."""

from __future__ import annotations

import ipaddress

import pytest

from tlsrpt_reporter.deliver.addresses import refusal

KEY = "reporter.https.allow_private"


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("169.254.1.1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: only a spelling of 127.0.0.1
        ("64:ff9b::a01:203", "private"),  # NAT64 wrapping 10.1.2.3
        ("2002:a01:203::1", "private"),  # 6to4 of 10.1.2.3
    ],
)
def test_non_public_addresses_are_refused_with_the_reason_and_the_key(
    address: str, why: str
) -> None:
    text = refusal(ipaddress.ip_address(address), (), KEY)
    assert text is not None and why in text and KEY in text


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860::8888"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), (), KEY) is None


def test_nat64_wrapping_a_public_ipv4_address_is_public() -> None:
    assert refusal(ipaddress.ip_address("64:ff9b::808:808"), (), KEY) is None


def test_a_listed_network_lets_its_addresses_through_whatever_their_kind() -> None:
    allow = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert refusal(ipaddress.ip_address("127.0.0.5"), allow, KEY) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.5"), allow, KEY) is None
    assert refusal(ipaddress.ip_address("fd00::5"), allow, KEY) is None
    assert refusal(ipaddress.ip_address("10.0.0.1"), allow, KEY) is not None
