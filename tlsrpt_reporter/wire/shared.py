"""What decoding keeps from one datagram to the next (:mod:`.decode`): the canonical forms of
values that recur, and one shared object for each policy.

Pure bookkeeping, bounded (:class:`~.recent.Recent`); nothing here changes what a datagram
decodes to, only how often the work is done. The same MX host's address, name and EHLO reply
come back with each of its failures, and a domain's policy with each of its sessions; parsing
an address with ipaddress alone takes microseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tlsrpt_reporter.model import Policy
from tlsrpt_reporter.wire.recent import Recent

_T = TypeVar("_T")
# A value in canonical form, and the notes (of canon.NOTES and the decoder's) it took.
Canonical = tuple[_T, frozenset[str]]
# A policy as received, after its type checks: (type, policy domain, policy-string, mx-host);
# in canonical form, the key of its shared Policy.
RawPolicy = tuple[str, str, tuple[str, ...], tuple[str, ...]]


def _chars(key: RawPolicy) -> int:
    """Characters of a policy's strings: it can carry many 16 KiB policy-string elements."""
    _type, policy_domain, strings, hosts = key
    return len(policy_domain) + sum(map(len, strings)) + sum(map(len, hosts))


# Those that size themselves (min_entries) shrink to a few hundred entries in a burst of new
# domains, where nothing recurs.
# The `d` and `policy-domain` of datagrams -> lower-case A-label.
DOMAINS: Recent[str, str] = Recent(8192, 1 << 20, len, min_entries=256)
# Raw policy -> its canonical Policy and notes.
POLICY_FORMS: Recent[RawPolicy, Canonical[Policy]] = Recent(4096, 2 << 20, _chars, min_entries=256)
# Failure details' addresses, MX host names and EHLO replies -> their canonical form.
IPS: Recent[str, Canonical[str | None]] = Recent(1024, 256 << 10, len)
HOSTS: Recent[str, Canonical[str | None]] = Recent(1024, 256 << 10, len)
HELOS: Recent[str, Canonical[str | None]] = Recent(1024, 1 << 20, len)
# Canonical policy -> the one frozen Policy: equal policies from different datagrams are then
# the same object, which the aggregate's dictionary lookups compare by identity first.
_POLICIES: Recent[RawPolicy, Policy] = Recent(2048, 2 << 20, _chars)


def canonical(
    memo: Recent[str, Canonical[str | None]],
    form: Callable[[str | None, set[str]], str | None],
    value: str | None,
    found: set[str],
) -> str | None:
    """``form(value, found)``, from ``memo`` while ``value`` recurs."""
    if value is None:
        return None
    known = memo.get(value)
    if known is None:
        added: set[str] = set()
        known = (form(value, added), frozenset(added))
        memo.put(value, known)
    result, notes = known
    if notes:
        found.update(notes)
    return result


def policy(key: RawPolicy) -> Policy:
    """The shared Policy of a canonical (type, policy domain, strings, MX patterns)."""
    shared = _POLICIES.get(key)
    if shared is None:
        shared = Policy(*key)
        _POLICIES.put(key, shared)
    return shared
