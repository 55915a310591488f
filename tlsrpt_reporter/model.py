"""Frozen value types shared by the wire decoder, the aggregate, the store and the report.

Names follow RFC 8460 (``policy_domain``, ``result_type``, ...). ``None`` means "unknown": such a
value is omitted from reports and exports, never written as null or "" (RFC 8460 §4.4 makes these
fields optional, and consumers reject nulls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# RFC 8460 §4.4: the only policy-type values.
POLICY_TYPES = ("sts", "tlsa", "no-policy-found")

# RFC 8460 §4.3 / IANA "Result Types": the only result-type values a report may carry.
RESULT_TYPES = (
    "starttls-not-supported",
    "certificate-host-mismatch",
    "certificate-expired",
    "certificate-not-trusted",
    "validation-failure",
    "tlsa-invalid",
    "dnssec-invalid",
    "dane-required",
    "sts-policy-fetch-error",
    "sts-policy-invalid",
    "sts-webpki-invalid",
)

# The optional failure-detail fields, in RFC 8460 §4.4 spelling and report order.
DETAIL_FIELDS = (
    "sending-mta-ip",
    "receiving-mx-hostname",
    "receiving-mx-helo",
    "receiving-ip",
    "additional-information",
    "failure-reason-code",
)


@dataclass(frozen=True, slots=True)
class Policy:
    """One evaluated policy in canonical form (docs/protocol.md, "How a datagram counts")."""

    policy_type: str
    policy_domain: str
    policy_string: tuple[str, ...] = ()
    mx_host: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The RFC 8460 ``policy`` object, empty lists omitted."""
        out: dict[str, Any] = {"policy-type": self.policy_type}
        if self.policy_string:
            out["policy-string"] = list(self.policy_string)
        out["policy-domain"] = self.policy_domain
        if self.mx_host:
            out["mx-host"] = list(self.mx_host)
        return out


@dataclass(frozen=True, slots=True)
class FailureDetail:
    """One failure detail, every field but the count; ``None`` is unknown."""

    result_type: str
    sending_mta_ip: str | None = None
    receiving_mx_hostname: str | None = None
    receiving_mx_helo: str | None = None
    receiving_ip: str | None = None
    additional_information: str | None = None
    failure_reason_code: str | None = None

    def optional_values(self) -> tuple[str | None, ...]:
        """The optional fields in :data:`DETAIL_FIELDS` order."""
        return (
            self.sending_mta_ip,
            self.receiving_mx_hostname,
            self.receiving_mx_helo,
            self.receiving_ip,
            self.additional_information,
            self.failure_reason_code,
        )

    def to_json(self, failed_session_count: int) -> dict[str, Any]:
        """The RFC 8460 failure-details entry; unknown fields are omitted (§4.4)."""
        out: dict[str, Any] = {"result-type": self.result_type}
        for name, value in zip(DETAIL_FIELDS, self.optional_values(), strict=True):
            if value:
                out[name] = value
        out["failed-session-count"] = failed_session_count
        return out


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """What one session found for one policy: its final result and the failures added."""

    policy: Policy
    failed: bool
    failure_details: tuple[FailureDetail, ...] = ()


@dataclass(frozen=True, slots=True)
class Datagram:
    """A decoded, validated datagram: one delivery attempt to one TLS-RPT policy domain."""

    domain: str
    record: str
    results: tuple[PolicyResult, ...]
    # Counter names for repairs and oddities that did not cause a rejection.
    notes: tuple[str, ...] = ()
    # The per-day counter naming the wire form it came in ("wire-form:dpv-1" or
    # "wire-form:no-dpv", see wire.WIRE_FORMS); empty for sessions that did not come through
    # the socket's decoder in that form (log adapters).
    wire_form: str = ""
