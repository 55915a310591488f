"""Datagrams and export lines for the collector tests."""

from __future__ import annotations

import json
from typing import Any

from tlsrpt_reporter.wire.encode import datagram


def ok(domain: str = "ok.example") -> bytes:
    """A valid success datagram for a domain without a policy."""
    policy = {"policy-type": 9, "policy-domain": domain, "t": 0, "f": 0}
    return datagram(domain, [policy], f"v=TLSRPTv1; rua=mailto:r@{domain}")


def canon(lines: list[dict[str, Any]]) -> list[str]:
    """Export lines (and their failure details) in an order-independent comparable form."""
    out = []
    for line in lines:
        line = dict(line)
        line["failure-details"] = sorted(
            json.dumps(d, sort_keys=True) for d in line["failure-details"]
        )
        out.append(json.dumps(line, sort_keys=True))
    return sorted(out)
