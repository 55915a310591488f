"""DKIM for report mail: loading keys, signing (RFC 8460 §5.3), self-checks against records.

Signing (:mod:`.dkim_sign`, re-exported here) and checking are pure functions over bytes, done
by dkimpy, with OpenSSL for the RSA operation of signing; the only I/O is :func:`load_key`
reading the private key file once. Nothing in this module queries DNS: the
caller passes the record text (from the configuration's ``record`` or from its own lookup) and
dkimpy gets it through its ``dnsfunc`` hook.

Why two signatures: RFC 8460 §5.3 asks that the key record used for reports carry
``s=tlsrpt``, and strict receivers (dkimpy's ``tlsrpt='strict'``) accept only such keys. But
RFC 6376 §3.6.1 tells ordinary verifiers to ignore a key whose ``s=`` names neither ``email``
nor ``*``, so a message signed only with an ``s=tlsrpt`` key has no signature DMARC can use,
and a ``p=reject`` receiver may refuse it. Sign once with an ``s=tlsrpt`` key and once with the
domain's usual key; :func:`coverage_problems` says when a configuration lacks either.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import dkim
import dkim.util

from tlsrpt_reporter.deliver import mail
from tlsrpt_reporter.deliver.dkim_keys import (
    MIN_RSA_BITS,
    DkimError,
    DkimKey,
    LoadedKey,
    load_key,
    record_for,
    record_name,
    zone_entry,
)
from tlsrpt_reporter.deliver.dkim_sign import SIGNED_HEADERS, sign

__all__ = [
    "SIGNED_HEADERS",
    "DkimError",
    "DkimKey",
    "KeyCheck",
    "LoadedKey",
    "check_key",
    "coverage_problems",
    "load_key",
    "record_for",
    "record_name",
    "settled",
    "sign",
    "zone_entry",
]

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class KeyCheck:
    """The outcome of checking a key against its published record."""

    key: DkimKey
    level: Level
    message: str
    services: tuple[str, ...] = ()  # the record's s= values; ("*",) when s= is absent


def check_key(key: LoadedKey, record_text: str) -> KeyCheck:
    """Sign a sample report with ``key`` and verify it with dkimpy against ``record_text``.

    ``record_text`` is the TXT record as published (a zone-file style ``"..." "..."`` value is
    joined). The result is ``ok`` when the record has exactly ``s=tlsrpt`` and dkimpy's strict
    RFC 8460 verification passes, ``warning`` when the key matches but the record is not a
    report-only key (see the module docstring), and ``error`` when the record cannot be parsed,
    is revoked, or does not hold this key's public half.
    """
    name = record_name(key.key)
    text = _unquote_zone_text(record_text)
    if not text:
        return _error(key, f"no record text for {name}: publish {record_for(key)!r}")
    try:
        tags: dict[bytes, bytes] = dkim.util.parse_tag_value(text.encode("ascii"))
    except (UnicodeEncodeError, dkim.util.InvalidTagValueList) as exc:
        return _error(key, f"the record for {name} is not a DKIM key record ({exc!r}): {text!r}")
    problem = _record_problem(key, name, tags)
    if problem:
        return _error(key, problem)
    services = _services(tags)
    if services == ("tlsrpt",):
        mode: bool | str = "strict"
        served = text
    elif {"tlsrpt", "*", "email"} & set(services):
        # dkimpy 1.1.8 refuses any s= other than exactly "*", "email" or "tlsrpt" (so also
        # "email:tlsrpt"); check the key itself against the record without its s= tag.
        mode = True
        served = "; ".join(f"{k.decode()}={v.decode()}" for k, v in tags.items() if k != b"s")
    else:
        return _error(
            key,
            f"the record for {name} has s={':'.join(services)}: no verifier uses this key for "
            "email or reports (RFC 6376 §3.6.1); publish " + record_for(key),
            services,
        )
    try:
        dkim.evaluate_pk(f"{name}.".encode(), served.encode())
    except dkim.DKIMException as exc:
        return _error(key, f"the public key in the record for {name} is unusable: {exc}", services)
    problem = _verify_sample(key, name, served, mode)
    if problem:
        return _error(key, problem, services)
    if services == ("tlsrpt",):
        return KeyCheck(key.key, "ok", "the key matches and the record has s=tlsrpt", services)
    return KeyCheck(key.key, "warning", _warning(services), services)


def settled(checks: Sequence[KeyCheck]) -> list[KeyCheck]:
    """``checks`` judged as a set: a matching key whose record lacks s=tlsrpt is the domain's
    usual key, and when another key of the set matches an exactly-s=tlsrpt record that is the
    configuration asked for (the module docstring), not something to warn about."""
    if not any(c.level == "ok" and c.services == ("tlsrpt",) for c in checks):
        return list(checks)
    report_keys = ", ".join(record_name(c.key) for c in checks if c.services == ("tlsrpt",))
    return [
        dataclasses.replace(
            c,
            level="ok",
            message=f"the key matches; its record (s={':'.join(c.services)}) is an ordinary "
            f"email key: the DMARC-aligned signature beside the s=tlsrpt one of {report_keys}",
        )
        if c.level == "warning" and "tlsrpt" not in c.services
        else c
        for c in checks
    ]


def coverage_problems(checks: Sequence[KeyCheck], from_addr: str) -> list[str]:
    """What the set of checked keys lacks: an s=tlsrpt signature, a DMARC-usable one, or both.

    Alignment is approximated without the Public Suffix List: a key's domain aligns when it
    equals the From domain or one is a parent of the other (DMARC relaxed alignment).
    """
    from_domain = from_addr.rpartition("@")[2].lower().rstrip(".")
    usable = [c for c in checks if c.level != "error"]
    problems: list[str] = []
    if not any(c.services == ("tlsrpt",) for c in usable):
        problems.append(
            "no working DKIM key with an s=tlsrpt record: receivers that follow RFC 8460 §5.3 "
            "strictly ignore the reports' signatures; add a key published with s=tlsrpt"
        )
    dmarc = [
        c
        for c in usable
        if ("*" in c.services or "email" in c.services) and _aligned(c.key.domain, from_domain)
    ]
    if not dmarc:
        problems.append(
            f"no working DKIM key usable for email (s= absent, '*' or 'email') in the domain of "
            f"From {from_addr}: RFC 6376 §3.6.1 verifiers ignore s=tlsrpt-only keys, so the "
            "reports have no DMARC-aligned signature; add the domain's usual key as a second "
            "[[reporter.mail.dkim]]"
        )
    return problems


def _record_problem(key: LoadedKey, name: str, tags: dict[bytes, bytes]) -> str:
    """Why the record's v=, p= or k= tags cannot work with ``key``; empty when they can."""
    if tags.get(b"v", b"DKIM1") != b"DKIM1":
        return f"the record for {name} has v={tags[b'v'].decode()}, not v=DKIM1"
    if not tags.get(b"p"):
        return (
            f"the record for {name} has no public key (p= missing or empty: a revoked key, "
            f"RFC 6376 §3.6.1); publish {record_for(key)}"
        )
    kind = tags.get(b"k", b"rsa").decode()
    expected = "rsa" if key.algorithm == "rsa-sha256" else "ed25519"
    if kind != expected:
        return f"the record for {name} is for k={kind} but {key.key.key_path} is an {expected} key"
    return ""


def _services(tags: dict[bytes, bytes]) -> tuple[str, ...]:
    """The record's s= values (RFC 6376 §3.6.1); an absent s= means "*"."""
    values = tuple(v.strip().decode() for v in tags.get(b"s", b"*").split(b":"))
    return tuple(v for v in values if v) or ("*",)


def _warning(services: tuple[str, ...]) -> str:
    if "tlsrpt" in services:
        return (
            f"the key matches, but the record has s={':'.join(services)}. RFC 6376 allows several "
            "services, yet dkimpy-based verifiers reject any s= other than exactly 'tlsrpt', "
            "'email' or '*' and so fail this signature; publish exactly s=tlsrpt for the report "
            "key and keep a second signature with the domain's usual key."
        )
    return (
        "the key matches, but the record lacks s=tlsrpt. RFC 8460 §5.3 asks that the report "
        "key's record say s=tlsrpt, and strict receivers ignore report signatures made with "
        "other keys. This key is still needed: RFC 6376 §3.6.1 makes ordinary verifiers ignore "
        "a key whose s= names neither 'email' nor '*', so a report signed only with an s=tlsrpt "
        "key has no DMARC-aligned signature and can be rejected under p=reject. Keep this key "
        "as the DMARC signature and add a second [[reporter.mail.dkim]] whose record has "
        "exactly s=tlsrpt."
    )


def _aligned(key_domain: str, from_domain: str) -> bool:
    return (
        key_domain == from_domain
        or from_domain.endswith("." + key_domain)
        or key_domain.endswith("." + from_domain)
    )


def _error(key: LoadedKey, message: str, services: tuple[str, ...] = ()) -> KeyCheck:
    return KeyCheck(key.key, "error", message, services)


def _verify_sample(key: LoadedKey, name: str, record: str, mode: bool | str) -> str:
    """Sign a sample report and verify it; an empty string when it verifies."""
    sample = mail.compose(
        report_domain="example.com",
        submitter=key.key.domain,
        report_id=f"key-check@{key.key.domain}",
        from_addr=f"tlsrpt-noreply@{key.key.domain}",
        to_addrs=["tlsrpt@example.com"],
        gzip_body=gzip.compress(b"{}", mtime=0),
        filename=f"{key.key.domain}!example.com!0!86399.json.gz",
        summary_text="DKIM key self-check.\n",
        date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        message_id=f"key-check@{key.key.domain}",
    )
    try:
        signed = sign(sample, [key])
    except DkimError as exc:
        return str(exc)
    verifier = dkim.DKIM(signed, tlsrpt=mode, minkey=MIN_RSA_BITS)
    try:
        valid = bool(verifier.verify(dnsfunc=_serve(name, record)))
    except dkim.DKIMException as exc:
        return f"dkimpy could not verify a sample signed with {key.key.key_path}: {exc}"
    if not valid:
        return (
            f"the private key in {key.key.key_path} does not match the public key in the record "
            f"for {name}: publish {record_for(key)!r} or configure the matching key file"
        )
    return ""


def _serve(name: str, record: str) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` that answers the one record name with ``record``."""

    def dnsfunc(qname: bytes, timeout: float = 5) -> bytes | None:
        if qname.decode("ascii").lower().rstrip(".") == name.lower():
            return record.encode("ascii")
        return None

    return dnsfunc


def _unquote_zone_text(text: str) -> str:
    """Join a zone-file style ``"part" "part"`` TXT value; plain text is returned stripped."""
    if '"' not in text:
        return text.strip()
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
    return re.sub(r"\\(.)", r"\1", "".join(parts)).strip()
