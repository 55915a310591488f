"""The answers a delivery pass keeps: the addresses of rua hosts and MX hosts, and MX records.

One report service receives the reports of thousands of domains on one host: asked for every
delivery, its A and AAAA records were two lookups (and most of the resolver's CPU) per POST.
A pass keeps them for their TTL, at most :data:`KEEP_AT_MOST` seconds, and an answer that
there are none (NXDOMAIN, NODATA) for :data:`KEEP_NO_RECORDS`; ``Resolver.new_pass`` forgets
them all. TLSRPT and DKIM records are never kept: each report reads its domain's record again
(RFC 8460 §3). What is kept is what was checked: the caller still checks every address before
each use, and connects to the address it checked (``deliver.https``, DNS rebinding).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

import dns.name
import dns.rdatatype

V = TypeVar("V")

KEPT_TYPES = frozenset((dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.MX))
KEEP_AT_MOST = 300.0
KEEP_NO_RECORDS = 60.0


class AnswerCache(Generic[V]):
    """Answers by (name, type), each until it expires (:data:`KEPT_TYPES` only)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._answers: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], tuple[float, V]] = {}

    def get(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> V | None:
        """The answer kept for (``qname``, ``rdtype``), None when there is none (any more)."""
        kept = self._answers.get((qname, rdtype))
        if kept is None:
            return None
        until, answer = kept
        if self.clock() >= until:
            del self._answers[(qname, rdtype)]
            return None
        return answer

    def put(
        self,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        answer: V,
        ttl: float | None,
    ) -> None:
        """Keep ``answer`` for ``ttl`` seconds (None: it says there are no records)."""
        if rdtype not in KEPT_TYPES:
            return
        seconds = KEEP_NO_RECORDS if ttl is None else min(ttl, KEEP_AT_MOST)
        if seconds > 0:
            self._answers[(qname, rdtype)] = (self.clock() + seconds, answer)

    def clear(self) -> None:
        """Forget every answer."""
        self._answers.clear()
