"""Decoder for libtlsrpt protocol-version-1 datagrams (docs/protocol.md).

Pure code: bytes in, a :class:`~tlsrpt_reporter.model.Datagram` out, or
:class:`~tlsrpt_reporter.errors.DatagramRejected` with a counter-friendly reason. Nothing else
may escape :func:`decode`, whatever the bytes.
"""

from __future__ import annotations

import json
from typing import Any

from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import DatagramRejected
from tlsrpt_reporter.model import Datagram, FailureDetail, Policy, PolicyResult
from tlsrpt_reporter.wire import canon, shared
from tlsrpt_reporter.wire.recent import Recent

# Every reason a datagram can be rejected for; each is a per-day counter "rejected:<reason>".
REJECT_REASONS = (
    "oversize",
    "not-json",
    "not-object",
    "unknown-dpv",
    "missing-field",
    "wrong-type",
    "bad-value",
    "unknown-policy-type",
    "invalid-domain",
    "too-deep",
    "policy-string-too-long",
)

# Notes on accepted datagrams; each is a per-day counter too.
NOTE_UTF8_REPAIRED = "utf8-repaired"
NOTE_UNKNOWN_KEYS = "unknown-keys"
NOTE_DETAIL_COUNT_MISMATCH = "detail-count-mismatch"
NOTE_UNKNOWN_RESULT_CODE = "unknown-result-code"
NOTES = (
    NOTE_UTF8_REPAIRED,
    NOTE_UNKNOWN_KEYS,
    NOTE_DETAIL_COUNT_MISMATCH,
    NOTE_UNKNOWN_RESULT_CODE,
    *canon.NOTES,
)
# The two forms of protocol version 1, as per-day counters of accepted datagrams: with
# "dpv": "1" (libtlsrpt 0.5.0 and later) or without "dpv" (libtlsrpt 0.5.0rc1, which Debian 13
# ships with Postfix 3.10). An operator learns from them which library feeds the collector.
FORM_DPV1 = "wire-form:dpv-1"
FORM_NO_DPV = "wire-form:no-dpv"
# The forms' names in the collector's metrics (the counter names without "wire-form:").
WIRE_FORMS = ("dpv-1", "no-dpv")

DEFAULT_MAX_SIZE = 262_144

# libtlsrpt's policy-type codes (docs/protocol.md, "Policies").
_POLICY_TYPE_CODES = {1: "tlsa", 2: "sts", 9: "no-policy-found"}

# libtlsrpt's result codes -> RFC 8460 §4.3 result-type names.
RESULT_CODES = {
    201: "starttls-not-supported",
    202: "certificate-host-mismatch",
    203: "certificate-not-trusted",
    204: "certificate-expired",
    205: "validation-failure",
    301: "sts-policy-fetch-error",
    302: "sts-policy-invalid",
    303: "sts-webpki-invalid",
    304: "tlsa-invalid",
    305: "dnssec-invalid",
    306: "dane-required",
}
# 901 is libtlsrpt-internal ("policy never finished"); docs/protocol.md says accept it defensively.
_CODE_NEVER_FINISHED = 901

_TOP_KEYS = frozenset(("dpv", "d", "pr", "policies"))
_POLICY_KEYS = frozenset(
    ("policy-type", "policy-domain", "policy-string", "mx-host", "failure-details", "t", "f")
)
# Short wire key -> FailureDetail field, in the dataclass's order.
_DETAIL_KEYS = {
    "s": "sending_mta_ip",
    "n": "receiving_mx_hostname",
    "h": "receiving_mx_helo",
    "r": "receiving_ip",
    "a": "additional_information",
    "f": "failure_reason_code",
}
_DETAIL_ALLOWED = frozenset(("c", *_DETAIL_KEYS))
# A valid datagram nests four levels deep; extra keys may not hide anything much deeper.
_MAX_EXTRA_DEPTH = 16


class _Notes:
    """Collects the notes of one decode; a tiny mutable helper local to this module."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: set[str] = set()


def decode(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Datagram:
    """Decode and validate one datagram.

    Invalid UTF-8 is repaired with U+FFFD and noted, because the bytes came from a remote
    server through the MTA (docs/protocol.md, "Transport"). Raises DatagramRejected only.
    """
    if len(data) > max_size:
        raise DatagramRejected("oversize", f"{len(data)} bytes, the limit is {max_size}")
    notes = _Notes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")
        notes.items.add(NOTE_UTF8_REPAIRED)
    try:
        obj = json.loads(text)
    except RecursionError:
        raise DatagramRejected("too-deep", "JSON nested too deeply") from None
    except ValueError as exc:
        raise DatagramRejected("not-json", str(exc)[:120]) from None
    if not isinstance(obj, dict):
        raise DatagramRejected("not-object", f"top level is a JSON {type(obj).__name__}")
    return _datagram(obj, notes)


def _datagram(obj: dict[str, Any], notes: _Notes) -> Datagram:
    # Hot path: plain type() checks (bool is not an int here, as JSON true is not a number).
    if not obj.keys() <= _TOP_KEYS:
        _check_extra_keys(obj, _TOP_KEYS, notes)
    # docs/protocol.md "Two forms of version 1": libtlsrpt 0.5.0rc1 predates the "dpv" key, and
    # its datagrams are version 1 in every other respect. A "dpv" that is present must be "1".
    if "dpv" not in obj:
        form = FORM_NO_DPV
    elif obj["dpv"] == "1":
        form = FORM_DPV1
    else:
        dpv = obj["dpv"]
        raise DatagramRejected("unknown-dpv", f"dpv {str(dpv)[:20]!r}, only '1' is known")
    raw_domain = obj.get("d")
    if type(raw_domain) is not str:
        raise _field_error(raw_domain, "d", "string", "datagram")
    domain = _domain(raw_domain, "d", notes)
    record = obj.get("pr", "")
    if type(record) is not str:
        raise DatagramRejected("wrong-type", "'pr' is not a string")
    policies = obj.get("policies")
    if type(policies) is not list:
        raise _field_error(policies, "policies", "array", "datagram")
    if not policies:
        raise DatagramRejected("bad-value", "'policies' is empty")
    results = tuple([_policy_result(p, domain, notes) for p in policies])
    return Datagram(
        domain=domain,
        record=record if record.isascii() else _repair(record, notes),
        results=results,
        notes=tuple(sorted(notes.items)),
        wire_form=form,
    )


def _field_error(value: Any, key: str, kind: str, where: str) -> DatagramRejected:
    if value is None:
        return DatagramRejected("missing-field", f"no '{key}' in {where}")
    return DatagramRejected("wrong-type", f"'{key}' in {where} is not a {kind}")


def _domain(raw: str, key: str, notes: _Notes) -> str:
    if raw.isascii():
        known = shared.DOMAINS.get(raw)
        if known is not None:
            return known
    try:
        name = normalize_domain(raw if raw.isascii() else _repair(raw, notes))
    except ValueError as exc:
        raise DatagramRejected("invalid-domain", f"'{key}' {raw[:80]!r}: {exc}") from None
    if raw.isascii():
        shared.DOMAINS.put(raw, name)
    return name


def _entry_code(
    obj: Any, allowed: frozenset[str], notes: _Notes, *, array: str, key: str, where: str
) -> int:
    """The integer ``key`` of ``obj``, an entry of ``array`` (a ``where`` in errors): it must
    be an object; keys beyond ``allowed`` are noted."""
    if type(obj) is not dict:
        raise DatagramRejected("wrong-type", f"a '{array}' entry is not an object")
    if not obj.keys() <= allowed:
        _check_extra_keys(obj, allowed, notes)
    code = obj.get(key)
    if type(code) is not int:
        raise _field_error(code, key, "integer", where)
    return code


def _policy_result(obj: Any, domain: str, notes: _Notes) -> PolicyResult:
    code = _entry_code(
        obj, _POLICY_KEYS, notes, array="policies", key="policy-type", where="policy"
    )
    policy_type = _POLICY_TYPE_CODES.get(code)
    if policy_type is None:
        raise DatagramRejected("unknown-policy-type", f"policy-type {code}")
    raw_pd = obj.get("policy-domain")
    if raw_pd is None or raw_pd == "":
        # docs/protocol.md: an absent or empty policy-domain belongs to `d` (Postfix < 3.10.5).
        policy_domain = domain
    elif type(raw_pd) is str:
        policy_domain = _domain(raw_pd, "policy-domain", notes)
    else:
        raise DatagramRejected("wrong-type", "'policy-domain' is not a string")
    total = obj.get("t")
    if type(total) is not int:
        raise _field_error(total, "t", "integer", "policy")
    final = obj.get("f")
    if type(final) is not int:
        raise _field_error(final, "f", "integer", "policy")
    if final not in (0, 1):
        raise DatagramRejected("bad-value", f"policy 'f' is {final}, expected 0 or 1")
    details_raw = obj.get("failure-details")
    if details_raw is None:
        details: tuple[FailureDetail, ...] = ()
    elif type(details_raw) is list:
        details = tuple([_failure_detail(d, notes) for d in details_raw])
    else:
        raise DatagramRejected("wrong-type", "'failure-details' is not an array")
    if total != len(details):
        # libtlsrpt does not keep these in step; count it, do not reject (docs/protocol.md).
        notes.items.add(NOTE_DETAIL_COUNT_MISMATCH)
    raw = (
        policy_type,
        policy_domain,
        _string_list(obj, "policy-string", notes),
        _string_list(obj, "mx-host", notes),
    )
    # Hot path: the canonical forms of the same strings, computed once while they recur.
    known = shared.POLICY_FORMS.get(raw)
    if known is None:
        known = _canonical_policy(raw)
        shared.POLICY_FORMS.put(raw, known)
    policy, found = known
    if found:
        notes.items.update(found)
    return PolicyResult(policy=policy, failed=final == 1, failure_details=details)


def _canonical_policy(raw: shared.RawPolicy) -> shared.Canonical[Policy]:
    """The policy of (type, domain, policy strings, MX patterns) in canonical form, shared with
    equal ones, and the notes its canonical form took."""
    policy_type, policy_domain, policy_strings, mx_hosts = raw
    found: set[str] = set()
    try:
        strings = canon.policy_strings(policy_type, policy_strings, found)
    except canon.PolicyStringTooLong as exc:
        raise DatagramRejected("policy-string-too-long", str(exc)) from None
    key = (policy_type, policy_domain, strings, canon.mx_hosts(mx_hosts, found))
    return shared.policy(key), frozenset(found)


def _failure_detail(obj: Any, notes: _Notes) -> FailureDetail:
    code = _entry_code(
        obj, _DETAIL_ALLOWED, notes, array="failure-details", key="c", where="failure detail"
    )
    found = notes.items
    values: list[str | None] = []
    for key in _DETAIL_KEYS:
        value = obj.get(key)
        if value is None or value == "":
            # An empty string is as good as absent: reports never carry "" (RFC 8460 §4.4).
            values.append(None)
        elif type(value) is str:
            values.append(value if value.isascii() else _repair(value, notes))
        else:
            raise DatagramRejected("wrong-type", f"failure detail '{key}' is not a string")
    # The canonical forms (wire/canon.py): what is stored is always reportable.
    sending, name, ehlo, receiving, additional, reason = values
    additional, reason = canon.additional_and_reason(additional, reason, found)
    values = [
        shared.canonical(shared.IPS, canon.ip, sending, found),
        shared.canonical(shared.HOSTS, canon.host, name, found),
        shared.canonical(shared.HELOS, canon.helo, ehlo, found),
        shared.canonical(shared.IPS, canon.ip, receiving, found),
        additional,
        reason,
    ]
    result_type = RESULT_CODES.get(code)
    if result_type is None:
        # The IANA registry can grow: keep the session, report the closest generic type.
        if code == _CODE_NEVER_FINISHED:
            reason = "policy-never-finished"
        else:
            reason = f"result-code-{code}"
            found.add(NOTE_UNKNOWN_RESULT_CODE)
        original = values[-1]
        values[-1] = f"{reason}: {original}" if original else reason
        result_type = "validation-failure"
    return FailureDetail(result_type, *values)


def _string_list(obj: dict[str, Any], key: str, notes: _Notes) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if type(value) is not list or not all(type(v) is str for v in value):
        raise DatagramRejected("wrong-type", f"'{key}' is not an array of strings")
    if all(v.isascii() for v in value):
        return tuple(value)
    return tuple([v if v.isascii() else _repair(v, notes) for v in value])


def _repair(value: str, notes: _Notes) -> str:
    """Return non-ASCII ``value`` as storable UTF-8 text: lone surrogates from \\uD800-style
    escapes cannot be encoded, so they become U+FFFD like any other invalid UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        notes.items.add(NOTE_UTF8_REPAIRED)
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


def _check_extra_keys(obj: dict[str, Any], allowed: frozenset[str], notes: _Notes) -> None:
    if obj.keys() <= allowed:
        return
    notes.items.add(NOTE_UNKNOWN_KEYS)
    for key in obj.keys() - allowed:
        if _depth(obj[key], 0) > _MAX_EXTRA_DEPTH:
            raise DatagramRejected("too-deep", f"unknown key {key[:40]!r} nests too deeply")


def _depth(value: Any, level: int) -> int:
    if level > _MAX_EXTRA_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


class CachingDecoder:
    """:func:`decode` with a bounded cache keyed by the raw bytes.

    Real traffic repeats itself (Postfix's success datagrams for a domain are byte-identical),
    and a decoded Datagram is immutable, so a hit skips JSON parsing and validation entirely.
    The cache keeps what recurs (:class:`~.recent.Recent`), at most ``max_entries`` and
    ``max_bytes`` (raw datagrams and an estimate of their decoded objects); it starts at a
    sixteenth of that and grows only while datagrams recur beyond what it holds. Datagrams
    over 16 KiB are not cached: each would take the room of dozens of common ones.
    """

    def __init__(
        self,
        max_size: int = DEFAULT_MAX_SIZE,
        max_entries: int = 32768,
        max_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.max_size = max_size
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._cache: Recent[bytes, Datagram] = Recent(
            max_entries // 2, max_bytes // 2, _cached_bytes, min_entries=max_entries // 32
        )

    def decode(self, data: bytes) -> Datagram:
        """Like :func:`decode`; rejections are not cached (they are rare and cheap to redo)."""
        hit = self._cache.get(data)
        if hit is not None:
            return hit
        datagram = decode(data, self.max_size)
        if len(data) <= _MAX_CACHED:
            self._cache.put(data, datagram)
        return datagram


_MAX_CACHED = 16 * 1024
# What a cached datagram costs beyond its bytes: the bytes object and dict slot, the Datagram,
# its results and the strings the policies and details do not share (tracemalloc, CPython 3.11:
# 400 to 700 bytes for samplegen's datagrams, and the more the longer the datagram).
_DECODED_COST = 600


def _cached_bytes(data: bytes) -> int:
    return 2 * len(data) + _DECODED_COST
