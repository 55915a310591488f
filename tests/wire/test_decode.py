"""Tests of the datagram decoder (tlsrpt_reporter.wire.decode), per docs/protocol.md."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.paths import DATA
from support.protocol import SPEC_RESULT_CODES

from tlsrpt_reporter.errors import DatagramRejected
from tlsrpt_reporter.model import RESULT_TYPES, Datagram, FailureDetail
from tlsrpt_reporter.wire import canon
from tlsrpt_reporter.wire import decode as wire
from tlsrpt_reporter.wire.encode import datagram

PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# docs/protocol.md, "Policies": policy-type codes.
SPEC_POLICY_TYPES = {1: "tlsa", 2: "sts", 9: "no-policy-found"}
# docs/protocol.md, "Failure details": short key -> FailureDetail attribute.
SPEC_DETAIL_KEYS = {
    "s": "sending_mta_ip",
    "n": "receiving_mx_hostname",
    "h": "receiving_mx_helo",
    "r": "receiving_ip",
    "a": "additional_information",
    "f": "failure_reason_code",
}
RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"


def policy(
    policy_type: int = 2,
    policy_domain: str | None = "example.com",
    *,
    strings: list[Any] | None = None,
    mx: list[Any] | None = None,
    details: list[dict[str, Any]] | None = None,
    t: int | None = None,
    f: int = 0,
) -> dict[str, Any]:
    """A wire-form policy object in libtlsrpt's key order; t defaults to len(details)."""
    obj: dict[str, Any] = {"policy-type": policy_type, "policy-domain": policy_domain}
    obj["policy-string"] = strings
    obj["mx-host"] = mx
    obj["failure-details"] = details
    obj["t"] = len(details or ()) if t is None else t
    obj["f"] = f
    return obj


def one_detail_datagram(detail: dict[str, Any], f: int = 1) -> Datagram:
    """Decode a datagram whose single policy carries the one failure detail given."""
    return wire.decode(datagram("example.com", [policy(1, details=[detail], f=f)], RECORD))


def base_object() -> dict[str, Any]:
    """A valid datagram as a parsed JSON object, for mutation into invalid ones."""
    return {
        "dpv": "1",
        "d": "mx.example.net",
        "pr": "v=TLSRPTv1;rua=https://reports.example.net/tlsrpt",
        "policies": [
            {
                "policy-type": 1,
                "policy-domain": "mx.example.net",
                "policy-string": ["3 1 1 8A9A70596E869BED72C69D97A8895DFA"],
                "mx-host": ["mx.example.net"],
                "failure-details": [{"c": 304, "s": "192.0.2.10", "f": "tlsa-no-match"}],
                "t": 1,
                "f": 1,
            }
        ],
    }


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def reject_reason(data: bytes, **kwargs: Any) -> str:
    with pytest.raises(DatagramRejected) as info:
        wire.decode(data, **kwargs)
    return info.value.reason


# --- accepted datagrams ---------------------------------------------------------------------


def test_protocol_examples_decode_to_their_rfc_8460_meaning() -> None:
    sts = wire.decode(
        b'{"dpv":"1","d":"example.com","pr":"v=TLSRPTv1; rua=mailto:tlsrpt@example.com",'
        b'"policies":[{"policy-type":2,"policy-domain":"example.com","policy-string":'
        b'["version: STSv1","mode: enforce","mx: mail.example.com","max_age: 86400"],'
        b'"mx-host":["mail.example.com"],"t":0,"f":0}]}'
    )
    assert sts.domain == "example.com"
    assert sts.record == "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"
    (result,) = sts.results
    assert result.policy.policy_type == "sts"
    assert result.policy.policy_domain == "example.com"
    assert result.policy.policy_string == (
        "version: STSv1",
        "mode: enforce",
        "mx: mail.example.com",
        "max_age: 86400",
    )
    assert result.policy.mx_host == ("mail.example.com",)
    assert result.failed is False
    assert result.failure_details == ()
    assert sts.notes == ()

    dane = wire.decode(
        b'{"dpv":"1","d":"mx.example.net","pr":"v=TLSRPTv1;rua=https://reports.example.net/tlsrpt",'
        b'"policies":[{"policy-type":1,"policy-domain":"mx.example.net","policy-string":'
        b'["3 1 1 8A9A70596E869BED72C69D97A8895DFA","3 1 1 12350A337E6DB9C6123522D136A47563"],'
        b'"failure-details":[{"c":304,"s":"192.0.2.10","n":"mx.example.net",'
        b'"h":"mx.example.net ESMTP","r":"198.51.100.7","f":"tlsa-no-match"}],"t":1,"f":1}]}'
    )
    (result,) = dane.results
    assert result.policy.policy_type == "tlsa"
    assert result.failed is True
    assert result.failure_details == (
        FailureDetail(
            result_type="tlsa-invalid",
            sending_mta_ip="192.0.2.10",
            receiving_mx_hostname="mx.example.net",
            receiving_mx_helo="mx.example.net",  # the announced name alone
            receiving_ip="198.51.100.7",
            failure_reason_code="tlsa-no-match",
        ),
    )
    assert dane.notes == ()

    none = wire.decode(
        b'{"dpv":"1","d":"example.org","pr":"v=TLSRPTv1; rua=mailto:tls@example.org",'
        b'"policies":[{"policy-type":9,"policy-domain":"example.org","t":0,"f":0}]}'
    )
    (result,) = none.results
    assert result.policy.policy_type == "no-policy-found"
    assert (result.policy.policy_string, result.policy.mx_host) == ((), ())


def test_libtlsrpt_layout_with_spaces_and_newlines_decodes() -> None:
    # libtlsrpt writes `"key": "value"` and starts each policy on a new line ("\n,{").
    data = (
        b'{"dpv": "1","d": "Example.COM.","pr": "v=TLSRPTv1; rua=mailto:t@example.com"\n'
        b',"policies":[{"policy-type":9,"policy-domain": "example.com","t":0,"f":0}\n'
        b',{"policy-type":2,"policy-domain": "example.com","t":0,"f":1}]}'
    )
    decoded = wire.decode(data)
    assert decoded.domain == "example.com"
    assert [r.policy.policy_type for r in decoded.results] == ["no-policy-found", "sts"]
    assert [r.failed for r in decoded.results] == [False, True]


@pytest.mark.parametrize(("code", "name"), sorted(SPEC_RESULT_CODES.items()))
def test_each_result_code_decodes_to_its_rfc_8460_result_type(code: int, name: str) -> None:
    decoded = one_detail_datagram({"c": code, "f": "original-reason"})
    (detail,) = decoded.results[0].failure_details
    assert detail.result_type == name
    assert detail.failure_reason_code == "original-reason"
    assert decoded.notes == ()


def test_code_901_is_a_validation_failure_saying_policy_never_finished() -> None:
    (detail,) = one_detail_datagram({"c": 901}).results[0].failure_details
    assert detail.result_type == "validation-failure"
    assert detail.failure_reason_code is not None
    assert "policy-never-finished" in detail.failure_reason_code


def test_unknown_result_code_is_a_validation_failure_naming_the_code() -> None:
    decoded = one_detail_datagram({"c": 999})
    (detail,) = decoded.results[0].failure_details
    assert detail.result_type == "validation-failure"
    assert detail.failure_reason_code is not None
    assert "999" in detail.failure_reason_code
    assert wire.NOTE_UNKNOWN_RESULT_CODE in decoded.notes
    # The session still counts as the policy said.
    assert decoded.results[0].failed is True


@pytest.mark.parametrize("code", [901, 999])
def test_substituted_reason_code_keeps_the_original_reason(code: int) -> None:
    (detail,) = one_detail_datagram({"c": code, "f": "tls-alert-40"}).results[0].failure_details
    assert detail.failure_reason_code is not None
    assert "tls-alert-40" in detail.failure_reason_code
    assert detail.failure_reason_code != "tls-alert-40"


def test_every_detail_key_maps_to_its_rfc_8460_field() -> None:
    # Values already in canonical form (docs/canonical-forms.md) come through unchanged.
    values = {
        "s": "192.0.2.1",
        "n": "mx.example.net",
        "h": "mx.example.net",
        "r": "2001:db8::25",
        "a": "https://example.net/why",
        "f": "certificate_verify_failed",
    }
    (detail,) = one_detail_datagram({"c": 202, **values}).results[0].failure_details
    for key, field in SPEC_DETAIL_KEYS.items():
        assert getattr(detail, field) == values[key]


def test_absent_detail_fields_are_unknown() -> None:
    (detail,) = one_detail_datagram({"c": 201}).results[0].failure_details
    assert detail == FailureDetail(result_type="starttls-not-supported")


@pytest.mark.parametrize("key", sorted(SPEC_DETAIL_KEYS))
def test_empty_string_detail_field_becomes_unknown(key: str) -> None:
    (detail,) = one_detail_datagram({"c": 203, key: ""}).results[0].failure_details
    assert getattr(detail, SPEC_DETAIL_KEYS[key]) is None


@pytest.mark.parametrize(("code", "name"), sorted(SPEC_POLICY_TYPES.items()))
def test_each_policy_type_code_decodes_to_its_rfc_8460_name(code: int, name: str) -> None:
    decoded = wire.decode(datagram("example.com", [policy(code)]))
    assert decoded.results[0].policy.policy_type == name


def test_policy_final_result_decides_failed() -> None:
    decoded = wire.decode(datagram("example.com", [policy(2, f=0), policy(1, f=1)]))
    assert [r.failed for r in decoded.results] == [False, True]


@pytest.mark.parametrize("policy_domain", [None, ""])
def test_absent_or_empty_policy_domain_takes_the_normalised_d(policy_domain: str | None) -> None:
    decoded = wire.decode(datagram("Example.COM.", [policy(9, policy_domain)]))
    assert decoded.results[0].policy.policy_domain == "example.com"


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Example.COM.", "example.com"),
        ("MX.Example.NET", "mx.example.net"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("München.DE.", "xn--mnchen-3ya.de"),
    ],
)
def test_d_and_policy_domain_are_normalised(raw: str, normalised: str) -> None:
    decoded = wire.decode(datagram(raw, [policy(2, raw)]))
    assert decoded.domain == normalised
    assert decoded.results[0].policy.policy_domain == normalised


def test_absent_record_is_empty_text() -> None:
    assert wire.decode(datagram("example.com", [policy()])).record == ""


def test_record_is_kept_verbatim() -> None:
    record = "v=TLSRPTv1;  rua=mailto:TLS@Example.com "
    assert wire.decode(datagram("example.com", [policy()], record)).record == record


def test_policy_string_and_mx_host_keep_their_order() -> None:
    strings = ["version: STSv1", "mx: b.example", "mode: testing", "mx: a.example"]
    mx = ["b.example", "*.a.example"]
    decoded = wire.decode(datagram("example.com", [policy(2, strings=strings, mx=mx)]))
    assert decoded.results[0].policy.policy_string == tuple(strings)
    assert decoded.results[0].policy.mx_host == tuple(mx)


def test_invalid_utf8_in_ehlo_reply_is_repaired_and_the_datagram_kept() -> None:
    helo = b"mx\xff\xfe.example.net ESMTP hello"
    decoded = one_detail_datagram({"c": 201, "h": helo, "n": "mx.example.net"})
    (detail,) = decoded.results[0].failure_details
    # docs/protocol.md: decode with replacement characters, keep the session.
    assert detail.receiving_mx_helo == "mx\ufffd\ufffd.example.net"
    assert detail.receiving_mx_hostname == "mx.example.net"
    assert wire.NOTE_UTF8_REPAIRED in decoded.notes
    assert decoded.results[0].failed is True


def test_invalid_utf8_in_policy_string_is_repaired() -> None:
    decoded = wire.decode(datagram("example.com", [policy(2, strings=[b"mode: \xc3("])]))
    assert decoded.results[0].policy.policy_string == ("mode: \ufffd(",)
    assert wire.NOTE_UTF8_REPAIRED in decoded.notes


def test_lone_surrogate_escape_is_repaired_to_replacement_characters() -> None:
    data = (
        b'{"dpv": "1","d": "example.com","policies":[{"policy-type":1,'
        b'"failure-details":[{"c":201,"h": "abc\\ud800def"}],"t":1,"f":1}]}'
    )
    decoded = wire.decode(data)
    (detail,) = decoded.results[0].failure_details
    helo = detail.receiving_mx_helo
    assert helo is not None
    helo.encode("utf-8")  # storable: no surrogate left
    assert helo.startswith("abc")
    assert helo.endswith("def")
    assert set(helo[3:-3]) == {"\ufffd"}
    assert wire.NOTE_UTF8_REPAIRED in decoded.notes


def test_valid_non_ascii_and_surrogate_pairs_are_not_noted_as_repaired() -> None:
    data = (
        b'{"dpv": "1","d": "example.com","pr": "gr\xc3\xbc\xc3\x9fe \\ud83d\\ude00",'
        b'"policies":[{"policy-type":9,"t":0,"f":0}]}'
    )
    decoded = wire.decode(data)
    assert decoded.record == "grüße \U0001f600"
    assert decoded.notes == ()


@pytest.mark.parametrize(("t", "count"), [(3, 1), (0, 2), (1, 0)])
def test_detail_count_mismatch_is_accepted_and_noted(t: int, count: int) -> None:
    details = [{"c": 204, "s": f"192.0.2.{i}"} for i in range(count)]
    decoded = wire.decode(datagram("example.com", [policy(2, details=details, t=t, f=1)]))
    assert len(decoded.results[0].failure_details) == count
    assert wire.NOTE_DETAIL_COUNT_MISMATCH in decoded.notes


def test_matching_detail_count_is_not_noted() -> None:
    details = [{"c": 204}, {"c": 202}]
    decoded = wire.decode(datagram("example.com", [policy(2, details=details, f=1)]))
    assert wire.NOTE_DETAIL_COUNT_MISMATCH not in decoded.notes


def _extra_top(obj: dict[str, Any]) -> None:
    obj["x-future"] = {"nested": [1, 2, {"a": None}]}


def _extra_policy(obj: dict[str, Any]) -> None:
    obj["policies"][0]["x-future"] = "value"


def _extra_detail(obj: dict[str, Any]) -> None:
    obj["policies"][0]["failure-details"][0]["z"] = [True, 1.5]


@pytest.mark.parametrize("add_key", [_extra_top, _extra_policy, _extra_detail])
def test_unknown_keys_at_any_level_are_accepted_and_noted(
    add_key: Callable[[dict[str, Any]], None],
) -> None:
    obj = base_object()
    add_key(obj)
    decoded = wire.decode(dumps(obj))
    assert wire.NOTE_UNKNOWN_KEYS in decoded.notes
    assert decoded.domain == "mx.example.net"
    assert decoded.results[0].failure_details[0].result_type == "tlsa-invalid"


def test_datagram_without_dpv_decodes_exactly_like_dpv_1() -> None:
    # libtlsrpt 0.5.0rc1 (Debian 13's, with Postfix 3.10) writes no "dpv" at all.
    with_dpv = base_object()
    without = base_object()
    del without["dpv"]
    old, new = wire.decode(dumps(without)), wire.decode(dumps(with_dpv))
    assert (old.domain, old.record, old.results, old.notes) == (
        new.domain,
        new.record,
        new.results,
        new.notes,
    )
    assert (old.wire_form, new.wire_form) == (wire.FORM_NO_DPV, wire.FORM_DPV1)


def test_captured_libtlsrpt_0_5_0rc1_datagrams_decode_to_what_postfix_decided() -> None:
    # Six datagrams as a real Postfix 3.10.13 with libtlsrpt0 0.5.0rc1-2 sent them.
    lines = (DATA / "libtlsrpt-0.5.0rc1.jsonl").read_bytes().splitlines()
    decoded = {d.domain: d for d in (wire.decode(line) for line in lines)}
    assert len(decoded) == len(lines) == 6
    assert {d.wire_form for d in decoded.values()} == {wire.FORM_NO_DPV}
    outcome = {
        domain: [
            (
                r.policy.policy_type,
                r.policy.policy_domain,
                r.failed,
                *(f.result_type for f in r.failure_details),
            )
            for r in d.results
        ]
        for domain, d in decoded.items()
    }
    assert outcome == {
        "a-dane-ok.test": [("tlsa", "mx.a-dane-ok.test", False)],
        "b-dane-mismatch.test": [
            ("tlsa", "mx.b-dane-mismatch.test", True, "certificate-not-trusted")
        ],
        "c-dane-unusable.test": [("tlsa", "mx.c-dane-unusable.test", True, "tlsa-invalid")],
        "d-dane-nostarttls.test": [
            ("tlsa", "mx.d-dane-nostarttls.test", True, "starttls-not-supported")
        ],
        "c2-dane-dropped.test": [("no-policy-found", "c2-dane-dropped.test", False)],
        "e-notlsa.test": [("no-policy-found", "e-notlsa.test", False)],
    }
    unusable = decoded["c-dane-unusable.test"].results[0].failure_details[0]
    assert unusable.failure_reason_code == "all-TLSA-records-unusable"
    assert all(not d.notes for d in decoded.values())


@pytest.mark.parametrize(
    ("reply", "name"),
    [
        ("250-mx.example.net\r\n250-SIZE 33554432\r\n250 HELP", "mx.example.net"),
        ("250 mx.example.net ESMTP Postfix", "mx.example.net"),
        ("mx.example.net ESMTP ready\r\n250-PIPELINING", "mx.example.net"),
        ("mx.example.net", "mx.example.net"),
        ("  250-MX.Example.NET  \r\n", "MX.Example.NET"),
    ],
)
def test_receiving_mx_helo_is_the_name_announced_in_the_ehlo_reply(reply: str, name: str) -> None:
    decoded = one_detail_datagram({"c": 203, "h": reply})
    assert decoded.results[0].failure_details[0].receiving_mx_helo == name


@pytest.mark.parametrize("reply", ["250-", "250", "250 ", " \r\n250 HELP"])
def test_ehlo_reply_without_a_name_leaves_receiving_mx_helo_unknown(reply: str) -> None:
    decoded = one_detail_datagram({"c": 203, "h": reply})
    assert decoded.results[0].failure_details[0].receiving_mx_helo is None


def test_valid_datagram_has_no_notes() -> None:
    assert wire.decode(dumps(base_object())).notes == ()


def test_datagram_of_exactly_max_size_is_accepted() -> None:
    data = dumps(base_object())
    assert wire.decode(data, max_size=len(data)).domain == "mx.example.net"


def test_notes_are_known_counter_names() -> None:
    obj = base_object()
    obj["extra"] = 1
    obj["policies"][0]["t"] = 5
    obj["policies"][0]["policy-string"].append("")
    first = obj["policies"][0]["failure-details"][0]
    first.update(c=777, h="\ud800", s="not an address", a="free text", f="x\x01" + "y" * 2000)
    obj["policies"][0]["failure-details"].append({"c": 203, "a": "more free text"})
    decoded = wire.decode(dumps(obj))
    assert set(decoded.notes) == set(wire.NOTES)
    assert list(decoded.notes) == sorted(set(decoded.notes))


# --- rejected datagrams ---------------------------------------------------------------------


def _mutated(mutate: Callable[[dict[str, Any]], None]) -> bytes:
    obj = base_object()
    mutate(obj)
    return dumps(obj)


def _pol(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["policies"][0]


def _det(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["policies"][0]["failure-details"][0]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


REJECTIONS: list[tuple[str, bytes, str]] = [
    ("not-json-empty", b"", "not-json"),
    ("not-json-garbage", b"hello", "not-json"),
    ("not-json-truncated", dumps(base_object())[:-1], "not-json"),
    ("not-json-trailing-comma", b'{"dpv": "1",}', "not-json"),
    ("not-object-array", b'[{"dpv": "1"}]', "not-object"),
    ("not-object-string", b'"dpv"', "not-object"),
    ("not-object-number", b"1", "not-object"),
    ("not-object-null", b"null", "not-object"),
    ("unknown-dpv-2", _mutated(lambda o: o.update(dpv="2")), "unknown-dpv"),
    ("dpv-number", _mutated(lambda o: o.update(dpv=1)), "unknown-dpv"),
    (
        "policy-string-too-long",
        _mutated(lambda o: _pol(o).update({"policy-string": ["3 1 1 " + "AB" * 9000]})),
        "policy-string-too-long",
    ),
    ("dpv-null", _mutated(lambda o: o.update(dpv=None)), "unknown-dpv"),
    ("dpv-empty", _mutated(lambda o: o.update(dpv="")), "unknown-dpv"),
    ("missing-d", _mutated(lambda o: o.pop("d")), "missing-field"),
    ("missing-policies", _mutated(lambda o: o.pop("policies")), "missing-field"),
    ("missing-t", _mutated(lambda o: _pol(o).pop("t")), "missing-field"),
    ("missing-f", _mutated(lambda o: _pol(o).pop("f")), "missing-field"),
    ("missing-policy-type", _mutated(lambda o: _pol(o).pop("policy-type")), "missing-field"),
    ("missing-c", _mutated(lambda o: _det(o).pop("c")), "missing-field"),
    ("d-number", _mutated(lambda o: o.update(d=5)), "wrong-type"),
    ("pr-number", _mutated(lambda o: o.update(pr=5)), "wrong-type"),
    ("t-string", _mutated(lambda o: _pol(o).update(t="1")), "wrong-type"),
    ("t-true", _mutated(lambda o: _pol(o).update(t=True)), "wrong-type"),
    ("f-true", _mutated(lambda o: _pol(o).update(f=True)), "wrong-type"),
    ("t-float", _mutated(lambda o: _pol(o).update(t=1.0)), "wrong-type"),
    ("policy-type-string", _mutated(lambda o: _pol(o).update({"policy-type": "1"})), "wrong-type"),
    ("policies-object", _mutated(lambda o: o.update(policies={"a": 1})), "wrong-type"),
    ("policies-string", _mutated(lambda o: o.update(policies="x")), "wrong-type"),
    ("policy-entry-number", _mutated(lambda o: o.update(policies=[5])), "wrong-type"),
    (
        "policy-domain-number",
        _mutated(lambda o: _pol(o).update({"policy-domain": 7})),
        "wrong-type",
    ),
    (
        "policy-string-string",
        _mutated(lambda o: _pol(o).update({"policy-string": "a"})),
        "wrong-type",
    ),
    (
        "policy-string-number-item",
        _mutated(lambda o: _pol(o).update({"policy-string": ["a", 1]})),
        "wrong-type",
    ),
    ("mx-host-number-item", _mutated(lambda o: _pol(o).update({"mx-host": [1]})), "wrong-type"),
    ("details-object", _mutated(lambda o: _pol(o).update({"failure-details": {}})), "wrong-type"),
    (
        "detail-entry-string",
        _mutated(lambda o: _pol(o).update({"failure-details": ["x"]})),
        "wrong-type",
    ),
    ("detail-s-number", _mutated(lambda o: _det(o).update(s=5)), "wrong-type"),
    ("detail-h-list", _mutated(lambda o: _det(o).update(h=["x"])), "wrong-type"),
    ("detail-c-string", _mutated(lambda o: _det(o).update(c="304")), "wrong-type"),
    ("detail-c-true", _mutated(lambda o: _det(o).update(c=True)), "wrong-type"),
    ("policy-f-2", _mutated(lambda o: _pol(o).update(f=2)), "bad-value"),
    ("policy-f-negative", _mutated(lambda o: _pol(o).update(f=-1)), "bad-value"),
    ("policies-empty", _mutated(lambda o: o.update(policies=[])), "bad-value"),
    (
        "policy-type-3",
        _mutated(lambda o: _pol(o).update({"policy-type": 3})),
        "unknown-policy-type",
    ),
    (
        "policy-type-0",
        _mutated(lambda o: _pol(o).update({"policy-type": 0})),
        "unknown-policy-type",
    ),
    ("d-with-space", _mutated(lambda o: o.update(d="exa mple.com")), "invalid-domain"),
    ("d-300-chars", _mutated(lambda o: o.update(d="a." * 149 + "com")), "invalid-domain"),
    ("d-dots", _mutated(lambda o: o.update(d="..")), "invalid-domain"),
    ("d-hyphen-label", _mutated(lambda o: o.update(d="-bad-.com")), "invalid-domain"),
    ("d-empty", _mutated(lambda o: o.update(d="")), "invalid-domain"),
    (
        "policy-domain-invalid",
        _mutated(lambda o: _pol(o).update({"policy-domain": "bad_.example com"})),
        "invalid-domain",
    ),
    ("deep-json", b"[" * 5000, "too-deep"),
    ("deep-json-object", b'{"dpv": ' + b"[" * 5000 + b"]" * 5000 + b"}", "too-deep"),
    ("deep-unknown-key", _mutated(lambda o: o.update(extra=_nested(40))), "too-deep"),
    (
        "deep-unknown-policy-key",
        _mutated(lambda o: _pol(o).update(extra={"a": _nested(40)})),
        "too-deep",
    ),
]


@pytest.mark.parametrize(
    ("data", "reason"), [(d, r) for _, d, r in REJECTIONS], ids=[i for i, _, _ in REJECTIONS]
)
def test_invalid_datagram_is_rejected_with_its_reason(data: bytes, reason: str) -> None:
    assert reject_reason(data) == reason


def test_datagram_over_max_size_is_rejected_as_oversize() -> None:
    data = dumps(base_object())
    assert reject_reason(data, max_size=len(data) - 1) == "oversize"


def test_default_size_cap_rejects_larger_datagrams() -> None:
    data = dumps(base_object())
    padded = data[:-1] + b',"pad": "' + b"x" * wire.DEFAULT_MAX_SIZE + b'"}'
    assert reject_reason(padded) == "oversize"


def test_every_reject_reason_is_provoked_by_these_tests() -> None:
    provoked = {r for _, _, r in REJECTIONS} | {"oversize"}
    assert provoked == set(wire.REJECT_REASONS)


def test_rejection_message_names_the_reason() -> None:
    with pytest.raises(DatagramRejected) as info:
        wire.decode(_mutated(lambda o: o.update(dpv="2")))
    assert str(info.value).startswith("unknown-dpv")
    assert "2" in info.value.detail


def test_shallow_unknown_value_is_not_too_deep() -> None:
    decoded = wire.decode(_mutated(lambda o: o.update(extra=_nested(3))))
    assert wire.NOTE_UNKNOWN_KEYS in decoded.notes


# --- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
domains = st.builds(
    lambda labels, dot: ".".join(labels) + ("." if dot else ""),
    st.lists(_label, min_size=1, max_size=4),
    st.booleans(),
)
texts = st.text(max_size=30)
detail_objects = st.fixed_dictionaries(
    {"c": st.sampled_from(sorted(SPEC_RESULT_CODES))},
    optional={key: texts for key in SPEC_DETAIL_KEYS},
)
policy_objects = st.builds(
    lambda ptype, pd, strings, mx, details, f: policy(
        ptype, pd, strings=strings, mx=mx, details=details, f=f
    ),
    st.sampled_from(sorted(SPEC_POLICY_TYPES)),
    st.none() | st.just("") | domains,
    st.none() | st.lists(texts, min_size=1, max_size=4),
    st.none() | st.lists(texts, min_size=1, max_size=3),
    st.none() | st.lists(detail_objects, min_size=1, max_size=3),
    st.integers(0, 1),
)
wire_objects = st.fixed_dictionaries(
    {
        "d": domains,
        "pr": st.none() | texts,
        "policies": st.lists(policy_objects, min_size=1, max_size=3),
    }
)


def encode_wire(obj: dict[str, Any]) -> bytes:
    return datagram(obj["d"], obj["policies"], obj["pr"])


def expected_domain(name: str) -> str:
    return name.removesuffix(".").lower()


def assert_decodes_or_rejects(data: bytes) -> None:
    try:
        decoded = wire.decode(data)
    except DatagramRejected as exc:
        assert exc.reason in wire.REJECT_REASONS
        return
    assert isinstance(decoded, Datagram)
    assert decoded.results
    assert set(decoded.notes) <= set(wire.NOTES)
    for result in decoded.results:
        assert result.policy.policy_type in SPEC_POLICY_TYPES.values()
        for detail in result.failure_details:
            assert detail.result_type in RESULT_TYPES


@PROPERTY
@given(st.binary(max_size=300))
def test_random_bytes_only_decode_or_reject(data: bytes) -> None:
    assert_decodes_or_rejects(data)


@PROPERTY
@given(json_values)
def test_random_json_only_decodes_or_rejects(value: Any) -> None:
    assert_decodes_or_rejects(json.dumps(value).encode())


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member of a dict or an element of a list inside ``value``."""
    found = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*path, key))
            found.extend(_paths(child, (*path, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((*path, index))
            found.extend(_paths(child, (*path, index)))
    return found


def _parent(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        obj = obj[step]
    return obj


@st.composite
def mutated_datagrams(draw: st.DrawFn) -> bytes:
    data = encode_wire(draw(wire_objects))
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete-key", "swap-type"]))
    if kind == "flip":
        index = draw(st.integers(0, len(data) - 1))
        bit = draw(st.integers(1, 255))
        return data[:index] + bytes([data[index] ^ bit]) + data[index + 1 :]
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "insert":
        index = draw(st.integers(0, len(data)))
        return data[:index] + draw(st.binary(min_size=1, max_size=8)) + data[index:]
    obj = json.loads(data)
    paths = _paths(obj)
    if kind == "delete-key":
        paths = [p for p in paths if isinstance(_parent(obj, p), dict)]
    path = draw(st.sampled_from(paths))
    parent = _parent(obj, path)
    if kind == "delete-key":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return json.dumps(obj).encode()


@PROPERTY
@given(mutated_datagrams())
def test_mutated_datagrams_only_decode_or_reject(data: bytes) -> None:
    assert_decodes_or_rejects(data)


@PROPERTY
@given(wire_objects)
def test_valid_datagrams_round_trip_through_the_libtlsrpt_encoding(obj: dict[str, Any]) -> None:
    decoded = wire.decode(encode_wire(obj))
    domain = expected_domain(obj["d"])
    assert decoded.domain == domain
    assert decoded.record == (obj["pr"] or "")
    assert set(decoded.notes) <= set(canon.NOTES)  # only the gate's repairs, if any
    assert len(decoded.results) == len(obj["policies"])
    seen: set[str] = set()
    for sent, result in zip(obj["policies"], decoded.results, strict=True):
        pd = sent["policy-domain"]
        policy_type = SPEC_POLICY_TYPES[sent["policy-type"]]
        assert result.policy.policy_type == policy_type
        assert result.policy.policy_domain == (expected_domain(pd) if pd else domain)
        # Every value arrives, in its canonical form (docs/canonical-forms.md).
        strings = canon.policy_strings(policy_type, sent["policy-string"] or (), seen)
        assert result.policy.policy_string == strings
        assert result.policy.mx_host == canon.mx_hosts(sent["mx-host"] or (), seen)
        assert result.failed is (sent["f"] == 1)
        sent_details = sent["failure-details"] or []
        assert len(result.failure_details) == len(sent_details)
        for wire_detail, detail in zip(sent_details, result.failure_details, strict=True):
            assert detail.result_type == SPEC_RESULT_CODES[wire_detail["c"]]
            additional, reason = canon.additional_and_reason(
                wire_detail.get("a"), wire_detail.get("f"), seen
            )
            assert (detail.additional_information, detail.failure_reason_code) == (
                additional,
                reason,
            )
            assert detail.sending_mta_ip == canon.ip(wire_detail.get("s"), seen)
            assert detail.receiving_ip == canon.ip(wire_detail.get("r"), seen)
            assert detail.receiving_mx_hostname == canon.host(wire_detail.get("n"), seen)
            assert detail.receiving_mx_helo == canon.helo(wire_detail.get("h"), seen)


# --- CachingDecoder -------------------------------------------------------------------------


def test_caching_decoder_returns_what_decode_returns() -> None:
    data = encode_wire(
        {"d": "Example.COM.", "pr": RECORD, "policies": [policy(1, details=[{"c": 304}], f=1)]}
    )
    decoder = wire.CachingDecoder()
    assert decoder.decode(data) == wire.decode(data)
    assert decoder.decode(data) == wire.decode(data)


def test_caching_decoder_serves_repeated_bytes_from_its_cache() -> None:
    data = encode_wire({"d": "example.com", "pr": RECORD, "policies": [policy()]})
    decoder = wire.CachingDecoder()
    first = decoder.decode(data)
    assert decoder.decode(data) is first
    # decode() itself builds a new object each time, so identity proves the cache hit.
    assert wire.decode(data) is not wire.decode(data)


def test_caching_decoder_does_not_cache_rejections() -> None:
    decoder = wire.CachingDecoder()
    for _ in range(3):
        with pytest.raises(DatagramRejected) as info:
            decoder.decode(b'{"dpv": "2"}')
        assert info.value.reason == "unknown-dpv"
    assert len(decoder._cache) == 0


def test_caching_decoder_applies_its_size_limit() -> None:
    data = encode_wire({"d": "example.com", "pr": RECORD, "policies": [policy()]})
    decoder = wire.CachingDecoder(max_size=len(data) - 1)
    with pytest.raises(DatagramRejected) as info:
        decoder.decode(data)
    assert info.value.reason == "oversize"


def test_caching_decoder_stays_within_max_entries() -> None:
    decoder = wire.CachingDecoder(max_entries=5)
    for i in range(40):
        data = encode_wire({"d": f"host{i}.example", "pr": None, "policies": [policy()]})
        assert decoder.decode(data).domain == f"host{i}.example"
        assert len(decoder._cache) <= 5
    # Still correct after the cache was cleared.
    again = encode_wire({"d": "host0.example", "pr": None, "policies": [policy()]})
    assert decoder.decode(again) == wire.decode(again)
