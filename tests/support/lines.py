"""``export``-shaped lines and policies for the report tests."""

from __future__ import annotations

from typing import Any

from tlsrpt_reporter.report.document import Identity

DAY = "2026-03-01"
ME = Identity("Example Mail Ltd", "tlsrpt@Example.NET")


def line(
    domain: str = "example.com",
    policy: dict[str, Any] | None = None,
    ok: int = 10,
    failed: int = 0,
    details: list[dict[str, Any]] | None = None,
    record: str = "v=TLSRPTv1; rua=mailto:r@example.com",
) -> dict[str, Any]:
    """An export line (the shape README.md gives under `export`)."""
    return {
        "day": DAY,
        "domain": domain,
        "record": record,
        "policy": policy or {"policy-type": "no-policy-found", "policy-domain": domain},
        "summary": {"total-successful-session-count": ok, "total-failure-session-count": failed},
        "failure-details": details or [],
    }


STS = {
    "policy-type": "sts",
    "policy-domain": "example.com",
    "policy-string": ["version: STSv1", "mode: enforce", "mx: mail.example.com", "max_age: 1"],
    "mx-host": ["Mail.Example.COM.", "*.Backup.example.com"],
}


def tlsa(host: str = "mx.provider.example", key: str = "3 1 1 AB") -> dict[str, Any]:
    """A DANE policy as the collector stores it: the MX host is its policy domain."""
    return {"policy-type": "tlsa", "policy-domain": host, "policy-string": [key]}


TLSA_FAILURE = {"result-type": "tlsa-invalid", "sending-mta-ip": "192.0.2.1",
                "receiving-mx-hostname": "mx.provider.example", "receiving-ip": "198.51.100.9",
                "failure-reason-code": "tlsa-no-match", "failed-session-count": 2}  # fmt: skip
