"""``inspect``'s DKIM verdict on a report mail: does each DKIM-Signature verify (RFC 6376 §6)?

This module owns the verdict and its wording ("pass", "fail", "temperror", "none", each with a
reason). The signature arithmetic is dkimpy's; the key records come from a :data:`KeyLookup`
the caller passes in (the command line's DNS resolver, or key files given offline), so this
module does no I/O of its own and must not import the delivery code.

The signatures are checked as RFC 8460 §5.3 asks of report mail: ``l=`` is ignored (the whole
body must match) and a key whose record says ``s=tlsrpt`` counts as much as an email key.
RFC 6376 §6.3 says a message whose signatures all fail is to be treated as an unsigned one, so
the verdict is shown next to the report's, not folded into it (``--require-dkim`` does that).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import dkim

from tlsrpt_reporter.errors import TlsRptError

# RFC 8301 §3.2: verifiers MUST NOT accept RSA keys shorter than 1024 bits.
MIN_RSA_BITS = 1024
_SHOW = 200
# dkimpy logs what it rejects at error level; the reasons are ours to show, once.
_SILENT = logging.getLogger("tlsrpt_reporter.report.inspect_dkim.dkimpy")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False

Result = Literal["pass", "fail", "temperror", "none", "not checked"]


class KeyLookupError(TlsRptError):
    """The key record could not be fetched for now (DNS timeout, SERVFAIL): RFC 6376 §6.1.2
    calls that TEMPFAIL, not a failed signature."""


#: ``selector._domainkey.domain`` (no trailing dot) -> the TXT records there, each with its
#: strings joined; [] when there is none. Raises KeyLookupError when DNS gives no answer.
KeyLookup = Callable[[str], list[str]]


@dataclass(frozen=True)
class SignatureCheck:
    """One DKIM-Signature header field and what became of it."""

    domain: str  # d=
    selector: str  # s=
    result: Literal["pass", "fail", "temperror"]
    reason: str


@dataclass(frozen=True)
class DkimVerdict:
    """The mail's verdict: ``pass`` when any signature verifies, else ``temperror`` when a
    key could not be fetched, else ``fail``; ``none`` without a signature, ``not checked``
    when no key source was given."""

    result: Result
    reason: str
    signatures: tuple[SignatureCheck, ...] = ()

    def line(self) -> str:
        """``pass (d=example.net s=tlsrpt)`` and the like, for one line of output."""
        return f"{self.result} ({self.reason})"


def verify(message: bytes, lookup: KeyLookup | None) -> DkimVerdict:
    """Check every DKIM-Signature of ``message`` (the mail's bytes as stored) with keys from
    ``lookup``; None: not checked, only counted."""
    if message.startswith(b"From "):
        message = message.partition(b"\n")[2]  # an mbox separator line is not a header
    count = _signature_count(message)
    if count == 0:
        return DkimVerdict("none", "the mail has no DKIM-Signature; RFC 8460 §5.3 requires one")
    if lookup is None:
        return DkimVerdict("not checked", f"{count} signature(s); no key source (--offline)")
    checks = tuple(_check(message, index, lookup) for index in range(count))
    passed = [c for c in checks if c.result == "pass"]
    if passed:
        return DkimVerdict("pass", ", ".join(_who(c) for c in passed), checks)
    temporary = [c for c in checks if c.result == "temperror"]
    worst = temporary[0] if temporary else checks[0]
    result: Result = "temperror" if temporary else "fail"
    return DkimVerdict(result, f"{_who(worst)}: {worst.reason}", checks)


def _signature_count(message: bytes) -> int:
    try:
        signer = _quiet(message)
    except dkim.DKIMException:
        return 0
    return sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")


def _check(message: bytes, index: int, lookup: KeyLookup) -> SignatureCheck:
    verifier = _quiet(message)
    try:
        prepared = verifier.verify_headerprep(index)
    except dkim.DKIMException as exc:
        return SignatureCheck("?", "?", "fail", f"the signature is malformed: {_text(exc)}")
    if not prepared:
        return SignatureCheck("?", "?", "fail", "the signature is malformed")
    fields = prepared[0]
    domain, selector = _ascii(fields.get(b"d", b"?")), _ascii(fields.get(b"s", b"?"))
    name = f"{selector}._domainkey.{domain}"

    def failed(reason: str) -> SignatureCheck:
        return SignatureCheck(domain, selector, "fail", reason)

    try:
        records = lookup(name)
    except KeyLookupError as exc:
        return SignatureCheck(domain, selector, "temperror", _text(exc))
    if not records:
        return failed(f"no key record at {name} (RFC 6376 §6.1.2: PERMFAIL)")
    if len(records) > 1:
        return failed(f"{name} has {len(records)} TXT records; a key record must be the only one")
    record = records[0]
    try:
        dkim.evaluate_pk(name.encode("ascii"), record.encode("ascii"))
    except (dkim.DKIMException, UnicodeEncodeError, ValueError) as exc:
        return failed(f"the key record at {name} is unusable: {_text(exc)}")

    def dnsfunc(qname: bytes, timeout: float = 5) -> bytes:
        return record.encode("ascii")

    try:
        good = bool(verifier.verify(index, dnsfunc=dnsfunc))
    except dkim.DKIMException as exc:
        return failed(_text(exc))
    if not good:
        return failed(
            "the signature does not match: the signed header fields or the body were changed "
            "after signing, or the key is not the one that signed"
        )
    return SignatureCheck(domain, selector, "pass", "verified")


def _quiet(message: bytes) -> dkim.DKIM:
    return dkim.DKIM(message, logger=_SILENT, minkey=MIN_RSA_BITS, tlsrpt=True)


def _who(check: SignatureCheck) -> str:
    return f"d={check.domain} s={check.selector}"


def _ascii(value: bytes) -> str:
    text = value.decode("ascii", "replace")
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:_SHOW]


def _text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:_SHOW]
