"""The TLSRPT record grammar (RFC 8460 §3), record selection and normalisation; pure code."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsrpt_reporter.deliver.record import (
    MAX_RECORD_LENGTH,
    MAX_URIS,
    RecordError,
    ReportURI,
    TlsRptRecord,
    is_tlsrpt_record,
    parse_record,
    select_record,
)
from tlsrpt_reporter.errors import TlsRptError


def mailto(address: str) -> ReportURI:
    return ReportURI("mailto", address)


def https(url: str) -> ReportURI:
    return ReportURI("https", url)


def uris(text: str) -> tuple[ReportURI, ...]:
    return parse_record(text).uris


# --- select_record: which TXT record is the TLSRPT one -----------------------------------------


def test_select_single_record() -> None:
    assert select_record(["v=TLSRPTv1; rua=mailto:a@example.com"]) == (
        "v=TLSRPTv1; rua=mailto:a@example.com"
    )


def test_select_ignores_other_txt_records() -> None:
    records = ["v=spf1 -all", "google-site-verification=abc", "v=TLSRPTv1;rua=mailto:a@x.example"]
    assert select_record(records) == "v=TLSRPTv1;rua=mailto:a@x.example"


def test_select_two_tlsrpt_records_means_no_report() -> None:
    records = ["v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:b@example.com"]
    assert select_record(records) is None


def test_select_two_spellings_of_the_same_record_are_still_two() -> None:
    records = ["v=TLSRPTv1;rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:a@example.com"]
    assert select_record(records) is None


def test_select_nothing_means_no_report() -> None:
    assert select_record([]) is None
    assert select_record(["v=spf1 -all"]) is None


@pytest.mark.parametrize(
    "text",
    [
        "v=TLSRPTv1",  # nothing after the version: not a record at all
        "v=TLSRPTv10; rua=mailto:a@example.com",
        "v=tlsrptv1; rua=mailto:a@example.com",
        "V=TLSRPTv1; rua=mailto:a@example.com",
        " v=TLSRPTv1; rua=mailto:a@example.com",
        "v=TLSRPTv2; rua=mailto:a@example.com",
    ],
)
def test_select_discards_records_not_starting_with_the_version_and_delimiter(text: str) -> None:
    assert not is_tlsrpt_record(text)
    assert select_record([text, "v=TLSRPTv1; rua=mailto:ok@example.com"]) == (
        "v=TLSRPTv1; rua=mailto:ok@example.com"
    )


def test_select_counts_version_with_blank_before_semicolon() -> None:
    # The ABNF's field-delim allows blanks before ";": such a record is a TLSRPT record.
    assert is_tlsrpt_record("v=TLSRPTv1 ; rua=mailto:a@example.com")
    records = ["v=TLSRPTv1 ; rua=mailto:a@example.com", "v=TLSRPTv1;rua=mailto:b@example.com"]
    assert select_record(records) is None


# --- parse_record: the grammar -----------------------------------------------------------------


def test_parse_minimal_mailto() -> None:
    record = parse_record("v=TLSRPTv1;rua=mailto:tlsrpt@example.com")
    assert record == TlsRptRecord(uris=(mailto("tlsrpt@example.com"),), ignored=())
    assert record.uris[0].host == "example.com"
    assert str(record.uris[0]) == "mailto:tlsrpt@example.com"


def test_parse_https() -> None:
    record = parse_record("v=TLSRPTv1; rua=https://reports.example.com/v1/tlsrpt")
    assert record.uris == (https("https://reports.example.com/v1/tlsrpt"),)
    assert record.uris[0].host == "reports.example.com"


def test_parse_comma_separated_list_keeps_order() -> None:
    text = "v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.net/x"
    assert uris(text) == (mailto("a@example.com"), https("https://r.example.net/x"))


def test_parse_several_rua_fields_are_all_collected() -> None:
    text = "v=TLSRPTv1; rua=mailto:a@example.com; rua=https://r.example/x; rua=mailto:b@example.org"
    assert uris(text) == (
        mailto("a@example.com"),
        https("https://r.example/x"),
        mailto("b@example.org"),
    )


@pytest.mark.parametrize(
    "text",
    [
        "v=TLSRPTv1; ext=1; rua=mailto:a@example.com",
        "v=TLSRPTv1; rua=mailto:a@example.com; ext=1",
        "v=TLSRPTv1; x.y-z_1=v:a/b,c; rua=mailto:a@example.com; Z9=~",
        "v=TLSRPTv1; RUA=mailto:evil@example.net; rua=mailto:a@example.com",
        "v=TLSRPTv1; v=TLSRPTv2; rua=mailto:a@example.com",
    ],
)
def test_parse_extensions_anywhere_are_ignored(text: str) -> None:
    assert parse_record(text) == TlsRptRecord(uris=(mailto("a@example.com"),), ignored=())


def test_parse_extensions_between_rua_fields() -> None:
    text = "v=TLSRPTv1; rua=mailto:a@example.com; note=x; rua=mailto:b@example.com"
    assert uris(text) == (mailto("a@example.com"), mailto("b@example.com"))


def test_parse_extension_name_of_32_characters_is_the_longest() -> None:
    ok = "v=TLSRPTv1; rua=mailto:a@example.com; " + "a" * 32 + "=1"
    assert uris(ok) == (mailto("a@example.com"),)
    with pytest.raises(RecordError, match="field name"):
        parse_record(ok.replace("a" * 32, "a" * 33))


@pytest.mark.parametrize(
    "text",
    [
        "v=TLSRPTv1;rua=mailto:a@example.com,mailto:b@example.com",
        "v=TLSRPTv1; rua=mailto:a@example.com , mailto:b@example.com",
        "v=TLSRPTv1 ;rua=mailto:a@example.com,\tmailto:b@example.com;",
        "v=TLSRPTv1\t;\trua=mailto:a@example.com ,mailto:b@example.com ; ",
        "v=TLSRPTv1; rua= mailto:a@example.com,mailto:b@example.com",
        "v=TLSRPTv1; rua=mailto:a@example.com,mailto:b@example.com ",
    ],
)
def test_parse_whitespace_variants_and_trailing_semicolon(text: str) -> None:
    assert parse_record(text) == TlsRptRecord(
        uris=(mailto("a@example.com"), mailto("b@example.com")), ignored=()
    )


def test_parse_joined_character_strings() -> None:
    # A record split over several TXT character-strings arrives joined with no separator.
    parts = ["v=TLSRPTv1;", "rua=mailto:tls", "rpt@example.com,https://r.exa", "mple/x"]
    assert uris("".join(parts)) == (mailto("tlsrpt@example.com"), https("https://r.example/x"))


def test_parse_percent_encoded_comma_and_semicolon_in_https_stay_in_the_uri() -> None:
    text = "v=TLSRPTv1; rua=https://r.example/a%2Cb%3Bc%21d?x=1"
    assert uris(text) == (https("https://r.example/a%2Cb%3Bc%21d?x=1"),)


def test_parse_percent_encoded_bang_in_mailto_is_decoded() -> None:
    assert uris("v=TLSRPTv1; rua=mailto:a%21b@example.com") == (mailto("a!b@example.com"),)


def test_parse_percent_encoded_comma_in_mailto_is_two_addresses() -> None:
    # RFC 6068 §2: the "to" part is a comma-separated address list; TLSRPT encodes the comma.
    text = "v=TLSRPTv1; rua=mailto:a@example.com%2Cb@example.org"
    assert uris(text) == (mailto("a@example.com"), mailto("b@example.org"))


def test_parse_percent_encoded_semicolon_does_not_split_the_field() -> None:
    record = parse_record("v=TLSRPTv1; rua=mailto:a@example.com%3Bb@example.org")
    # Decoded only after the split: one URI whose address holds ";", which no address may.
    assert record.uris == ()
    assert len(record.ignored) == 1
    assert "'a@example.com;b' is not a plain ASCII dot-atom" in record.ignored[0]


def test_parse_literal_bang_is_ignored_with_a_note() -> None:
    record = parse_record("v=TLSRPTv1; rua=mailto:a@example.com!10m,mailto:b@example.com")
    assert record.uris == (mailto("b@example.com"),)
    assert "%21" in record.ignored[0]


@pytest.mark.parametrize("encoded", ["%0D%0A", "%0a", "%0d", "%00", "%09", "%7F", "%C2%85"])
def test_parse_mailto_with_encoded_control_characters_is_refused(encoded: str) -> None:
    text = f"v=TLSRPTv1; rua=mailto:a@example.com{encoded}Bcc:victim@example.net,mailto:b@x.example"
    record = parse_record(text)
    assert record.uris == (mailto("b@x.example"),)
    assert len(record.ignored) == 1
    assert "control characters" in record.ignored[0]
    assert encoded in record.ignored[0]  # the note shows the URI as written, safe for a log


def test_parse_mailto_header_injection_in_local_part_is_refused() -> None:
    record = parse_record("v=TLSRPTv1; rua=mailto:a%0D%0ASubject:%20x@example.com")
    assert record.uris == ()
    assert "control characters" in record.ignored[0]


def test_parse_mailto_header_fields_are_ignored() -> None:
    text = "v=TLSRPTv1; rua=mailto:a@example.com?subject=hi&to=other@evil.example&body=x"
    assert parse_record(text) == TlsRptRecord(uris=(mailto("a@example.com"),), ignored=())


def test_parse_mailto_domain_is_normalised() -> None:
    record = parse_record(
        "v=TLSRPTv1; rua=mailto:Reports@Example.COM.,MAILTO:x@b%C3%BCcher.example"
    )
    assert record.uris == (mailto("Reports@example.com"), mailto("x@xn--bcher-kva.example"))
    assert record.uris[1].host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("mailto:", "no address"),
        ("mailto:?to=a@example.com", "no address"),
        ("mailto:example.com", "not local@domain"),
        ("mailto:@example.com", "not local@domain"),
        ("mailto:a@", "not local@domain"),
        ("mailto:a@localhost", "plausible"),
        ("mailto:a@10.0.0.1", "plausible"),
        ("mailto:a@[192.0.2.1]", "address literals"),
        ("mailto:a@_x.example.com", "plausible"),
        ("mailto:a@exa..mple.com", "not valid"),
        ("mailto:a@b@example.com", "dot-atom"),
        ("mailto:%22a%20b%22@example.com", "dot-atom"),
        ("mailto:a..b@example.com", "dot-atom"),
        ("mailto:%C3%A4@example.com", "dot-atom"),
        ("mailto:%FF@example.com", "UTF-8"),
        ("mailto:" + "a" * 65 + "@example.com", "longer than 64"),
    ],
)
def test_parse_invalid_mailto_is_ignored_with_a_note(uri: str, why: str) -> None:
    record = parse_record(f"v=TLSRPTv1; rua={uri},mailto:ok@example.com")
    assert record.uris == (mailto("ok@example.com"),)
    assert len(record.ignored) == 1
    assert why in record.ignored[0]


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://r.example/x", "'http' is not supported"),
        ("ftp://r.example/x", "'ftp' is not supported"),
        ("data:text/plain%2Cx", "'data' is not supported"),
        ("file:///etc/passwd", "'file' is not supported"),
        ("r.example/x", "no scheme"),
        ("https://user:pw@r.example/x", "user information"),
        ("https://user@r.example/x", "user information"),
        ("https:///x", "no host"),
        ("https:r.example/x", "no host"),
        ("https://r.example:99999/x", "not a valid URL"),
        ("https://r.example:port/x", "not a valid URL"),
        ("https://[::1/x", "not a valid URL"),
        ("https://r_.exa%20mple/x", "not valid"),
        ("https://r.example/\x00", "control"),
        ("https://r.example/\r\n", "control"),
        ("https://bücher.example/x", "non-ASCII"),
    ],
)
def test_parse_unsupported_or_malformed_uri_is_ignored_with_a_note(uri: str, why: str) -> None:
    record = parse_record(f"v=TLSRPTv1; rua={uri},https://ok.example/")
    assert record.uris == (https("https://ok.example/"),)
    assert len(record.ignored) == 1
    assert why in record.ignored[0]


def test_parse_https_ip_literals_are_kept_for_the_delivery_checks() -> None:
    # Refusing private addresses is the HTTPS delivery's job (it also checks resolved names).
    record = parse_record("v=TLSRPTv1; rua=https://[2001:db8::1]:8443/r,https://192.0.2.7/r")
    assert record.uris == (https("https://[2001:db8::1]:8443/r"), https("https://192.0.2.7/r"))
    assert [uri.host for uri in record.uris] == ["2001:db8::1", "192.0.2.7"]


def test_parse_scheme_is_case_insensitive() -> None:
    text = "v=TLSRPTv1; rua=HTTPS://R.example/Path,MailTo:a@example.com"
    assert uris(text) == (https("https://R.example/Path"), mailto("a@example.com"))
    assert parse_record(text).uris[0].host == "r.example"


def test_parse_no_usable_rua_gives_no_uris_and_says_why() -> None:
    record = parse_record("v=TLSRPTv1; rua=http://r.example/,ftp://r.example/")
    assert record.uris == ()
    assert len(record.ignored) == 2


def test_parse_duplicates_are_used_once() -> None:
    text = "v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:a@EXAMPLE.com,https://r.example/"
    record = parse_record(text)
    assert record.uris == (mailto("a@example.com"), https("https://r.example/"))
    assert "more than once" in record.ignored[0]


def test_parse_caps_the_number_of_uris() -> None:
    many = ",".join(f"mailto:r{i}@example.com" for i in range(MAX_URIS + 5))
    record = parse_record(f"v=TLSRPTv1; rua={many}")
    assert record.uris == tuple(mailto(f"r{i}@example.com") for i in range(MAX_URIS))
    assert record.ignored == (f"5 rua URI(s) beyond the first {MAX_URIS} ignored",)


def test_parse_record_length_cap() -> None:
    base = "v=TLSRPTv1; rua=mailto:a@example.com; x="
    exact = base + "y" * (MAX_RECORD_LENGTH - len(base))
    assert uris(exact) == (mailto("a@example.com"),)
    with pytest.raises(RecordError, match=str(MAX_RECORD_LENGTH)):
        parse_record(exact + "y")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "must start with"),
        ("v=TLSRPTv1", "nothing after"),
        ("v=TLSRPTv1 ", "nothing after"),
        ("v=TLSRPTv1;", "no field"),
        ("v=TLSRPTv1; ", "no field"),
        ("v=tlsrptv1; rua=mailto:a@example.com", "case-sensitive"),
        ("V=TLSRPTv1; rua=mailto:a@example.com", "must start with"),
        ("v=TLSRPTv10; rua=mailto:a@example.com", "must start with"),
        ("v = TLSRPTv1; rua=mailto:a@example.com", "must start with"),
        (" v=TLSRPTv1; rua=mailto:a@example.com", "must start with"),
        ("rua=mailto:a@example.com; v=TLSRPTv1", "must start with"),
        ("v=TLSRPTv1 rua=mailto:a@example.com", "must start with"),
        ("v=TLSRPTv1; ext=1", "no rua= field"),
        ("v=TLSRPTv1; RUA=mailto:a@example.com", "case-sensitive"),
        ("v=TLSRPTv1;; rua=mailto:a@example.com", "empty field"),
        ("v=TLSRPTv1; rua=mailto:a@example.com;;", "empty field"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; ;x=1", "empty field"),
        ("v=TLSRPTv1; rua=", "empty URI"),
        ("v=TLSRPTv1; rua=mailto:a@example.com,", "empty URI"),
        ("v=TLSRPTv1; rua=mailto:a@example.com,,mailto:b@example.com", "empty URI"),
        ("v=TLSRPTv1; rua", "not name=value"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; junk", "not name=value"),
        ("v=TLSRPTv1; rua =mailto:a@example.com", "field name"),
        ("v=TLSRPTv1; _x=1; rua=mailto:a@example.com", "field name"),
        ("v=TLSRPTv1; =1; rua=mailto:a@example.com", "field name"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; x=", "extension value"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; x=a b", "extension value"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; x=a=b", "extension value"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; x=\x01", "extension value"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; x=é", "extension value"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; \r\nx=1", "field name"),
    ],
)
def test_parse_malformed_records_raise(text: str, why: str) -> None:
    with pytest.raises(RecordError, match=why):
        parse_record(text)


def test_record_error_is_a_project_error() -> None:
    assert issubclass(RecordError, TlsRptError)


# --- properties --------------------------------------------------------------------------------

_GRAMMAR_CHARS = list("v=TLSRPTv1;rua:mailto@https/.,!%2C3B0D0A?&# \t\r\n\x00é[]_-")
_noisy_text = st.text(
    alphabet=st.one_of(st.sampled_from(_GRAMMAR_CHARS), st.characters()), max_size=200
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_noisy_text, _noisy_text.map(lambda tail: "v=TLSRPTv1; rua=" + tail)))
def test_parse_record_raises_only_record_error(text: str) -> None:
    try:
        record = parse_record(text)
    except RecordError:
        return
    assert len(record.uris) <= MAX_URIS
    for uri in record.uris:
        assert uri.scheme in ("mailto", "https")
        assert uri.host
        assert all(ch >= " " and ch != "\x7f" for ch in uri.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_select_never_raises(text: str) -> None:
    select_record([text, text + ";"])


_address = st.from_regex(r"[a-z0-9]{1,8}@[a-z]{1,8}\.(com|org|example)", fullmatch=True)
_uri = st.one_of(
    _address.map(lambda a: f"mailto:{a}"),
    st.from_regex(r"https://[a-z]{1,8}\.example/[a-z0-9%]{0,8}", fullmatch=True),
)
_extension = st.from_regex(r"[a-z][a-z0-9_.-]{0,8}=[a-zA-Z0-9:/,.]{1,8}", fullmatch=True)
_blank = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def _spelled_records(draw: st.DrawFn) -> tuple[str, str]:
    """Two spellings of one valid record: compact, and with random blanks and a trailing ";"."""
    fields: list[list[str] | str] = draw(
        st.lists(st.one_of(st.lists(_uri, min_size=1, max_size=3), _extension), max_size=4)
    )
    fields.insert(draw(st.integers(0, len(fields))), draw(st.lists(_uri, min_size=1, max_size=3)))
    compact, loose = "v=TLSRPTv1", "v=TLSRPTv1"
    for field in fields:
        if isinstance(field, list):
            compact += ";rua=" + ",".join(field)
            joined = "".join(draw(_blank) + "," + draw(_blank) + u for u in field)[1:]
            loose += draw(_blank) + ";" + draw(_blank) + "rua=" + joined.lstrip(" \t,")
        else:
            compact += ";" + field
            loose += draw(_blank) + ";" + draw(_blank) + field
    if draw(st.booleans()):
        loose += draw(_blank) + ";" + draw(_blank)
    return compact, loose


@settings(max_examples=200, deadline=None)
@given(_spelled_records())
def test_spellings_of_one_record_parse_alike(spellings: tuple[str, str]) -> None:
    compact, loose = spellings
    assert parse_record(compact) == parse_record(loose)
