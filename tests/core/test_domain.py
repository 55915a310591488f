"""Tests of domain normalisation: lower-case A-labels without a trailing dot (RFC 8460 §4.4)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsrpt_reporter.domain import normalize_domain, organizational_domain


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.com", "example.com"),
        ("Example.COM.", "example.com"),
        ("MAIL.EXAMPLE.NET", "mail.example.net"),
        ("localhost", "localhost"),
        ("a-b--c.example", "a-b--c.example"),
        ("123.example", "123.example"),
        # "_" is tolerated: the MTA reports the DNS names it used.
        ("_smtp._tls.Example.com", "_smtp._tls.example.com"),
        # RFC 3492 / IDNA: U-labels become A-labels.
        ("bücher.example", "xn--bcher-kva.example"),
        ("München.de.", "xn--mnchen-3ya.de"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.Example.", "xn--bcher-kva.example"),
        # UTS #46 maps the ideographic full stop between labels to ".".
        ("bücher\u3002example", "xn--bcher-kva.example"),
    ],
)
def test_normalize_domain_gives_lower_case_a_labels_without_trailing_dot(
    name: str, expected: str
) -> None:
    assert normalize_domain(name) == expected


def test_longest_label_and_longest_name_are_accepted() -> None:
    label = "a" * 63
    assert normalize_domain(label + ".com") == label + ".com"
    name = ".".join(["b" * 63] * 3 + ["c" * 61])
    assert len(name) == 253
    assert normalize_domain(name + ".") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "a..b",
        ".example.com",
        "example.com..",
        "exa mple.com",
        "-bad-.com",
        "bad-.com",
        "-bad.com",
        "exa/mple.com",
        "example.com/",
        "exa\x00mple.com",
        "user@example.com",
        "a" * 64 + ".com",
        "a." * 149 + "com",
        ".".join(["b" * 63] * 3 + ["c" * 62]),
        "\u2603.example",  # DISALLOWED in IDNA 2008
        "bücher..example",
    ],
)
def test_unusable_names_raise_value_error(name: str) -> None:
    with pytest.raises(ValueError):
        normalize_domain(name)


def test_value_error_names_the_problem() -> None:
    with pytest.raises(ValueError, match="longer than 253"):
        normalize_domain("a." * 149 + "com")
    with pytest.raises(ValueError, match="-bad-"):
        normalize_domain("-bad-.com")


@pytest.mark.parametrize("dot", ["\u3002", "\uff0e", "\uff61"])
def test_trailing_ideographic_full_stop_is_a_trailing_dot(dot: str) -> None:
    assert normalize_domain("bücher.example" + dot) == "xn--bcher-kva.example"


_label = st.from_regex(r"[a-zA-Z0-9_](?:[a-zA-Z0-9_-]{0,20}[a-zA-Z0-9_])?", fullmatch=True)


@settings(max_examples=250, deadline=None)
@given(st.lists(_label, min_size=1, max_size=5), st.booleans())
def test_ascii_names_normalise_to_their_lower_case_without_trailing_dot(
    labels: list[str], trailing_dot: bool
) -> None:
    name = ".".join(labels)
    result = normalize_domain(name + ("." if trailing_dot else ""))
    assert result == name.lower()
    assert normalize_domain(result) == result


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_normalises_to_an_idempotent_ascii_name_or_raises_value_error(
    name: str,
) -> None:
    try:
        result = normalize_domain(name)
    except ValueError:
        return
    assert result.isascii()
    assert result == result.lower()
    assert not result.endswith(".")
    assert normalize_domain(result) == result


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.com", "example.com"),
        ("a.b.example.com", "example.com"),
        ("mail.example.co.uk", "example.co.uk"),
        ("a.b.c.kawasaki.jp", "b.c.kawasaki.jp"),  # a wildcard rule of the list
        ("me.github.io", "me.github.io"),  # the list's private section
        ("mail.xn--80ak6aa92e.xn--p1ai", "xn--80ak6aa92e.xn--p1ai"),  # A-labels, as configured
        ("a.b.example.test", "example.test"),  # no listed suffix: the default rule "*"
        ("co.uk", "co.uk"),  # a public suffix is its own
        ("localhost", "localhost"),
    ],
)
def test_the_organisational_domain_is_the_public_suffix_and_one_label(
    name: str, expected: str
) -> None:
    # The snapshot bundled with tldextract, nothing fetched: this test runs without a network.
    assert organizational_domain(name) == expected
