"""A TLS outcome read from an MTA's log, and its protocol-v1 datagram.

The log adapters turn log lines into :class:`LogSession` values; each becomes the datagram the
MTA would have sent through libtlsrpt, so it is counted by the very code the collector uses. A
log never shows the `_smtp._tls` record: the datagram carries none and the reporter takes the
record from DNS when it sends (docs/protocol.md: ``pr`` may be absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.wire.decode import RESULT_CODES
from tlsrpt_reporter.wire.encode import datagram

_CODE_OF = {name: code for code, name in RESULT_CODES.items()}
_POLICY_CODE = {"tlsa": 1, "sts": 2, "no-policy-found": 9}


@dataclass(frozen=True, slots=True)
class LogSession:
    """One SMTP connection's TLS outcome; ``result_type`` None means success."""

    when: float
    domain: str
    policy_type: str = "no-policy-found"
    policy_domain: str = ""
    result_type: str | None = None
    mx_hostname: str | None = None
    receiving_ip: str | None = None
    reason: str | None = None

    def datagram(self) -> bytes:
        """The libtlsrpt datagram for this session (no ``pr``: the record comes from DNS)."""
        policy: dict[str, Any] = {
            "policy-type": _POLICY_CODE[self.policy_type],
            "policy-domain": self.policy_domain or self.domain,
        }
        if self.result_type is None:
            policy.update(t=0, f=0)
        else:
            detail: dict[str, Any] = {"c": _CODE_OF[self.result_type]}
            if self.mx_hostname:
                detail["n"] = self.mx_hostname
            if self.receiving_ip:
                detail["r"] = self.receiving_ip
            if self.reason:
                detail["f"] = self.reason
            policy.update({"failure-details": [detail], "t": 1, "f": 1})
        return datagram(self.domain, [policy])


def reason_code(text: str) -> str:
    """A failure-reason-code in Postfix's style: the error text with spaces as ``_``."""
    return "_".join(text.strip().split())[:200]


# OpenSSL's verification errors (X509_verify_cert_error_string) and the MTAs' own wording,
# matched on lower-case text, first match wins. RFC 8460 §4.3.2 defines the result types.
_VERIFY_RESULTS = (
    ("dane tlsa", "tlsa-invalid"),
    ("tlsa", "tlsa-invalid"),
    ("hostname mismatch", "certificate-host-mismatch"),
    ("name mismatch", "certificate-host-mismatch"),
    ("certificate has expired", "certificate-expired"),
    ("self-signed", "certificate-not-trusted"),
    ("self signed", "certificate-not-trusted"),
    ("issuer", "certificate-not-trusted"),
    ("unable to verify the first certificate", "certificate-not-trusted"),
    ("certificate not trusted", "certificate-not-trusted"),
    ("certificate rejected", "certificate-not-trusted"),
    ("invalid ca certificate", "certificate-not-trusted"),
)


def verify_result(text: str) -> str:
    """The RFC 8460 result type for a certificate verification error as an MTA logs it;
    ``validation-failure`` for anything more specific types do not cover."""
    lower = text.lower()
    for needle, result in _VERIFY_RESULTS:
        if needle in lower:
            return result
    return "validation-failure"


def recipient_domain(address: str) -> str:
    """The normalised domain of a recipient address; ValueError when it has none (a local
    name, or a single-label domain no TLS-RPT record can sit under)."""
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain.strip("."):
        raise ValueError(f"no domain in recipient {address[:100]!r}")
    return normalize_domain(domain)
