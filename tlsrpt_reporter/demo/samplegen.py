"""Seeded generator of realistic libtlsrpt datagrams, shaped like Postfix 3.10 sends them.

One policy per datagram, zero or one failure detail, success datagrams without IP or MX
fields, DANE policies keyed by the MX host. Used for the bundled sample, the benchmarks and
the tests; the same seed always gives the same bytes.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from typing import Any

from tlsrpt_reporter.wire.encode import datagram

_SENDING_IPS = ("192.0.2.10", "192.0.2.11", "2001:db8::25")
# (wire code, reason code) per policy type, as Postfix produces them.
_FAILURES = {
    9: [(201, None), (202, None), (203, "self-signed_certificate"), (204, None),
        (205, "tls-handshake-failure")],
    2: [(201, None), (202, None), (203, "unable_to_get_local_issuer_certificate"),
        (204, "certificate_has_expired"), (301, None), (302, None), (303, None)],
    1: [(304, "all-TLSA-records-unusable"), (305, None), (306, None),
        (205, "tls-handshake-failure")],
}  # fmt: skip


class Domain:
    """One recipient domain with its record, policy and MX hosts."""

    def __init__(self, rng: random.Random, index: int) -> None:
        self.name = f"d{index:05d}.example"
        self.mx = [f"mx{i}.{self.name}" for i in range(1, rng.choice((2, 3)))]
        self.policy_type = rng.choices((9, 2, 1), weights=(5, 3, 2))[0]
        sep = rng.choice(("; ", ";"))
        target = (
            f"mailto:tlsrpt@{self.name}" if rng.random() < 0.7 else f"https://tlsrpt.{self.name}/v1"
        )
        self.record = f"v=TLSRPTv1{sep}rua={target}"
        self.failure_rate = rng.choice((0.0, 0.0, 0.01, 0.05, 0.5, 1.0))

    def policy(self, rng: random.Random) -> dict[str, Any]:
        """A wire-form policy object for one session to this domain."""
        if self.policy_type == 2:
            lines = ["version: STSv1", "mode: enforce", *(f"mx: {m}" for m in self.mx)]
            return {
                "policy-type": 2,
                "policy-domain": self.name,
                "policy-string": [*lines, "max_age: 604800"],
                "mx-host": list(self.mx),
            }
        if self.policy_type == 1:
            mx = rng.choice(self.mx)
            tlsa = f"3 1 1 {random.Random(mx).getrandbits(256):064X}"
            return {"policy-type": 1, "policy-domain": mx, "policy-string": [tlsa]}
        return {"policy-type": 9, "policy-domain": self.name}


def _mx_address(host: str) -> str:
    pick = random.Random(host)
    if pick.random() < 0.3:
        return f"2001:db8:{pick.randrange(1, 0xFFFF):x}::{pick.choice((25, 26))}"
    return f"198.51.100.{pick.randrange(1, 255)}"


def sessions(seed: int, domain_count: int, count: int) -> Iterator[bytes]:
    """``count`` datagrams over ``domain_count`` domains, session counts skewed like real mail."""
    rng = random.Random(seed)
    domains = [Domain(rng, i) for i in range(domain_count)]
    weights = [1.0 / (rank + 1) for rank in range(domain_count)]
    for domain in rng.choices(domains, weights=weights, k=count):
        policy = domain.policy(rng)
        if rng.random() < domain.failure_rate:
            code, reason = rng.choice(_FAILURES[domain.policy_type])
            mx = str(policy["policy-domain"]) if domain.policy_type == 1 else rng.choice(domain.mx)
            detail: dict[str, Any] = {
                "c": code,
                "s": rng.choice(_SENDING_IPS),
                "n": mx,
                "h": f"{mx} ESMTP ready\r\n250-PIPELINING\r\n250 STARTTLS",
                # An MX host has a fixed address or two, not a new one per session.
                "r": _mx_address(mx),
            }
            if reason:
                detail["f"] = reason
            policy |= {"failure-details": [detail], "t": 1, "f": 1}
        else:
            policy |= {"t": 0, "f": 0}
        yield datagram(domain.name, [policy], domain.record)


SAMPLE_SEED = 8460
SAMPLE_DOMAINS = 300
SAMPLE_SESSIONS = 3000


def main(argv: list[str] | None = None) -> int:
    """Write the bundled sample (or another seed/size) as JSON lines to standard output."""
    p = argparse.ArgumentParser(prog="python -m tlsrpt_reporter.demo.samplegen")
    p.add_argument("--seed", type=int, default=SAMPLE_SEED)
    p.add_argument("--domains", type=int, default=SAMPLE_DOMAINS)
    p.add_argument("--sessions", type=int, default=SAMPLE_SESSIONS)
    args = p.parse_args(argv)
    out = sys.stdout.buffer
    for line in sessions(args.seed, args.domains, args.sessions):
        out.write(line + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
