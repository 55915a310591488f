"""The canonical forms: every value that reaches a report passes here once, where it enters.

The collector's decoder (and so ``replay`` and ``ingest-log``, which go through it) and the
reporter's sources (``export`` lines of other collectors, older rows) put values into these
forms, so that what is stored is always reportable and the same policy or failure detail is
always spelled the same (docs/canonical-forms.md). Receivers aggregate our reports with
everyone else's: a value in an odd form splits their statistics or is dropped.

Pure functions. A value that can be repaired is; one that cannot is dropped, the smallest thing
first: the element, then the optional field; the caller notes each with a counter name from
:data:`NOTES`. Only a ``policy-string`` element too long to keep whole rejects the datagram.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import InputError

# Bounds (docs/canonical-forms.md): free text of a failure detail is cut; a host name longer
# than DNS allows is dropped; a policy-string element is kept whole or not at all, because
# cutting it would change the policy (a full-certificate TLSA record is a few KB of hex).
MAX_TEXT = 1024
MAX_HOST = 253
MAX_POLICY_STRING = 16 * 1024

# Counter names, per day, of what the gate repaired or dropped in accepted datagrams.
NOTE_CONTROL = "canon:control-characters-removed"
NOTE_CUT = "canon:text-cut"
NOTE_DROPPED_ELEMENT = "canon:empty-or-bad-element-dropped"
NOTE_DROPPED_FIELD = "canon:bad-field-dropped"
NOTE_MOVED = "canon:additional-information-moved"
NOTES = (NOTE_CONTROL, NOTE_CUT, NOTE_DROPPED_ELEMENT, NOTE_DROPPED_FIELD, NOTE_MOVED)

# C0 and C1 controls and DEL: CR, LF and NUL among them (header injection, broken JSON readers).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
# RFC 3986 §3.1: a URI starts with a scheme and a colon.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_HEX = re.compile(r"[0-9A-Fa-f]+")


class PolicyStringTooLong(InputError):
    """A policy-string element is longer than :data:`MAX_POLICY_STRING`."""


def text(value: str | None, notes: set[str]) -> str | None:
    """Free text without control characters, at most :data:`MAX_TEXT` characters; None for
    nothing left (an optional field is then absent, never ``""``)."""
    if value is None:
        return None
    if _CONTROL.search(value):
        value = _CONTROL.sub(" ", value)
        notes.add(NOTE_CONTROL)
    value = value.strip()
    if len(value) > MAX_TEXT:
        value = value[:MAX_TEXT]
        notes.add(NOTE_CUT)
    return value or None


def ip(value: str | None, notes: set[str]) -> str | None:
    """An IP address in RFC 5952 text (IPv4-mapped IPv6 as plain IPv4, zone dropped: it means
    nothing off the host); None when absent or not an address."""
    if not value:
        return None
    address = value.strip().split("%", 1)[0]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        notes.add(NOTE_DROPPED_FIELD)
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return str(parsed)


def host(value: str | None, notes: set[str]) -> str | None:
    """A host name as a lower-case A-label without trailing dot; None when absent or unusable."""
    if not value:
        return None
    try:
        return normalize_domain(value.strip())
    except ValueError:
        notes.add(NOTE_DROPPED_FIELD)
        return None


def helo(value: str | None, notes: set[str]) -> str | None:
    """``receiving-mx-helo``: the name announced in the EHLO reply (RFC 8460 §4.4). Postfix
    passes its whole multi-line reply; the name is the first word of the first line, after the
    reply code when there is one (RFC 5321 §4.1.1.1)."""
    if not value:
        return None
    first = value.replace("\r", "\n").split("\n", 1)[0].strip()
    if len(first) >= 3 and first[:3].isdigit() and first[3:4] in ("", " ", "-"):
        first = first[4:]
    words = first.split(None, 1)
    return text(words[0], notes) if words else None


def additional_and_reason(
    additional: str | None, reason: str | None, notes: set[str]
) -> tuple[str | None, str | None]:
    """``additional-information`` must be a URI (RFC 8460 §4.4); free text found there moves to
    ``failure-reason-code`` when that is empty, else it is dropped."""
    additional, reason = text(additional, notes), text(reason, notes)
    if additional is not None and not _URI.fullmatch(additional):
        notes.add(NOTE_MOVED if reason is None else NOTE_DROPPED_FIELD)
        if reason is None:
            reason = additional
        additional = None
    return additional, reason


def tlsa_record(value: str) -> str:
    """One TLSA record as ``usage selector matching HEX``: single spaces, hex in upper case (as
    Postfix sends it); text that is not of that shape is kept with its spaces folded."""
    words = value.split()
    if len(words) >= 4 and all(w.isdigit() for w in words[:3]):
        data = "".join(words[3:])
        if _HEX.fullmatch(data):
            return f"{int(words[0])} {int(words[1])} {int(words[2])} {data.upper()}"
    return " ".join(words)


def policy_strings(policy_type: str, values: Iterable[str], notes: set[str]) -> tuple[str, ...]:
    """A policy's lines: no control characters, no empty element; TLSA records normalised and
    sorted (the same RRset served in another order is the same policy), STS lines in the
    order received. Raises PolicyStringTooLong for an element that cannot be kept whole."""
    kept: list[str] = []
    for element in values:
        if len(element) > MAX_POLICY_STRING:
            raise PolicyStringTooLong(
                f"a policy-string element of {len(element)} characters, the limit is "
                f"{MAX_POLICY_STRING}"
            )
        line = element
        if _CONTROL.search(line):
            line = _CONTROL.sub(" ", line)
            notes.add(NOTE_CONTROL)
        line = line.strip()
        if not line:
            notes.add(NOTE_DROPPED_ELEMENT)
            continue
        kept.append(tlsa_record(line) if policy_type == "tlsa" else line)
    return tuple(sorted(kept)) if policy_type == "tlsa" else tuple(kept)


def mx_hosts(values: Iterable[str], notes: set[str]) -> tuple[str, ...]:
    """An STS policy's MX patterns, in the order received: host names in canonical form, a
    leading ``*.`` kept; an element that is no host name is dropped."""
    kept: list[str] = []
    for value in values:
        pattern = value.strip()
        wildcard = pattern.startswith("*.")
        name = host(pattern[2:] if wildcard else pattern, set())
        if name is None:
            notes.add(NOTE_DROPPED_ELEMENT)
            continue
        kept.append(f"*.{name}" if wildcard else name)
    return tuple(kept)


def export_line(line: dict[str, Any]) -> dict[str, Any] | None:
    """An ``export`` line (README.md, ``export``) with every value in canonical form; None for a
    line no report can carry (a policy-string element too long to keep whole).

    For what the decoder did not see: rows stored before the gate existed (the collector
    database's migration to version 3, and the reporter on reading a day) and the lines of
    other collectors. The counts are kept; equal policies and details are left to the caller
    to merge."""
    notes: set[str] = set()
    policy = dict(line["policy"])
    policy["policy-domain"] = host(policy.get("policy-domain"), notes) or line["domain"]
    try:
        strings = policy_strings(policy["policy-type"], policy.get("policy-string", ()), notes)
    except PolicyStringTooLong:
        return None
    for key, values in (("policy-string", strings),
                        ("mx-host", mx_hosts(policy.get("mx-host", ()), notes))):  # fmt: skip
        if values:
            policy[key] = list(values)
        else:
            policy.pop(key, None)
    details = [_export_detail(detail, notes) for detail in line["failure-details"]]
    return {**line, "policy": policy, "failure-details": details}


def _export_detail(detail: dict[str, Any], notes: set[str]) -> dict[str, Any]:
    additional, reason = additional_and_reason(
        detail.get("additional-information"), detail.get("failure-reason-code"), notes
    )
    values = {
        "sending-mta-ip": ip(detail.get("sending-mta-ip"), notes),
        "receiving-mx-hostname": host(detail.get("receiving-mx-hostname"), notes),
        "receiving-mx-helo": helo(detail.get("receiving-mx-helo"), notes),
        "receiving-ip": ip(detail.get("receiving-ip"), notes),
        "additional-information": additional,
        "failure-reason-code": reason,
    }
    out = {"result-type": detail["result-type"]}
    out.update({key: value for key, value in values.items() if value is not None})
    out["failed-session-count"] = detail["failed-session-count"]
    return out
