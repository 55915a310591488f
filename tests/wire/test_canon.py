"""The canonical forms (tlsrpt_reporter.wire.canon), each pinned down; and through the decoder,
the datagram fields they apply to."""

from __future__ import annotations

import pytest

from tlsrpt_reporter.wire import canon
from tlsrpt_reporter.wire.decode import decode
from tlsrpt_reporter.wire.encode import datagram


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),  # RFC 5952: lower case, zero run compressed
        ("2001:db8::0:1", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4-mapped IPv6 is the IPv4 address
        ("fe80::1%eth0", "fe80::1"),  # a zone means nothing off the host
        (" 192.0.2.1 ", "192.0.2.1"),
        ("not an address", None),
        ("", None),
    ],
)
def test_ip_addresses_take_their_rfc_5952_form(raw: str, canonical: str | None) -> None:
    assert canon.ip(raw, set()) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("MX.Example.NET.", "mx.example.net"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("a" * 250 + ".example", None),  # longer than DNS allows: dropped
        ("bad name", None),
    ],
)
def test_host_names_are_lower_case_a_labels_without_a_trailing_dot(
    raw: str, canonical: str | None
) -> None:
    assert canon.host(raw, set()) == canonical


def test_mx_host_patterns_keep_their_wildcard_and_order_and_lose_bad_elements() -> None:
    notes: set[str] = set()
    assert canon.mx_hosts(["*.Mail.Example.COM", "", "mx2.example.com.", "x y"], notes) == (
        "*.mail.example.com",
        "mx2.example.com",
    )
    assert canon.NOTE_DROPPED_ELEMENT in notes


def test_tlsa_records_are_normalised_and_sorted_sts_lines_keep_their_order() -> None:
    rrset = ["3  1 1  ab12", "2 0 1 FF00", ""]
    assert canon.policy_strings("tlsa", rrset, set()) == ("2 0 1 FF00", "3 1 1 AB12")
    assert canon.policy_strings("tlsa", list(reversed(rrset)), set()) == (
        "2 0 1 FF00",
        "3 1 1 AB12",
    )
    lines = ["version: STSv1", "mode: enforce", "", "mx: b.example", "mx: a.example"]
    assert canon.policy_strings("sts", lines, set()) == (
        "version: STSv1",
        "mode: enforce",
        "mx: b.example",
        "mx: a.example",
    )


def test_a_policy_string_element_is_kept_whole_up_to_16_kib_and_refused_beyond() -> None:
    whole = "3 0 0 " + "AB" * 8000
    assert canon.policy_strings("tlsa", [whole], set()) == (whole,)
    with pytest.raises(canon.PolicyStringTooLong):
        canon.policy_strings("tlsa", ["3 0 0 " + "AB" * 8200], set())


def test_free_text_loses_control_characters_and_is_cut_to_1024() -> None:
    notes: set[str] = set()
    assert canon.text("tls\r\nInjected: yes\x00", notes) == "tls Injected: yes"
    assert canon.text("x" * 5000, notes) == "x" * 1024
    assert canon.text(" \r\n ", notes) is None  # nothing left: the field is absent, never ""
    assert {canon.NOTE_CONTROL, canon.NOTE_CUT} <= notes


def test_additional_information_is_a_uri_free_text_moves_to_the_reason_code() -> None:
    assert canon.additional_and_reason("https://example.net/why", None, set()) == (
        "https://example.net/why",
        None,
    )
    assert canon.additional_and_reason("handshake failed", None, set()) == (
        None,
        "handshake failed",
    )
    assert canon.additional_and_reason("handshake failed", "tls-error", set()) == (
        None,
        "tls-error",
    )


@pytest.mark.parametrize(
    ("reply", "name"),
    [
        ("250-mx.example.net\r\n250-SIZE 1000\r\n250 HELP", "mx.example.net"),
        ("mx.example.net ESMTP ready", "mx.example.net"),
        ("250 ", None),
    ],
)
def test_receiving_mx_helo_is_the_announced_name(reply: str, name: str | None) -> None:
    assert canon.helo(reply, set()) == name


def test_the_decoder_applies_the_forms_to_every_field_of_a_datagram() -> None:
    detail = {
        "c": 203,
        "s": "::ffff:192.0.2.10",
        "n": "MX.Example.NET.",
        "h": "250-MX.Example.NET\r\n250 STARTTLS",
        "r": "2001:DB8::25%eth0",
        "a": "see the log",
        "f": "",
    }
    policy = {
        "policy-type": 1,
        "policy-domain": "MX.Example.NET.",
        "policy-string": ["3 1 1 ab", "", "2 1 1 cd"],
        "failure-details": [detail],
        "t": 1,
        "f": 1,
    }
    (result,) = decode(datagram("example.net", [policy], "v=TLSRPTv1; rua=mailto:a@b")).results
    assert result.policy.policy_domain == "mx.example.net"
    assert result.policy.policy_string == ("2 1 1 CD", "3 1 1 AB")
    (fd,) = result.failure_details
    assert (fd.sending_mta_ip, fd.receiving_ip) == ("192.0.2.10", "2001:db8::25")
    assert (fd.receiving_mx_hostname, fd.receiving_mx_helo) == ("mx.example.net", "MX.Example.NET")
    assert (fd.additional_information, fd.failure_reason_code) == (None, "see the log")
