"""Which addresses a report may be sent to: the rule against pointing us into private networks.

Anyone can publish any ``rua`` (RFC 8460 §7): without this rule a record could make the reporter
POST or mail into the operator's own network. An address must be public, unless the operator
lists its network. Pure: the callers resolve names, then connect only to an address that passed
(so a second DNS answer cannot swap in another one).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 6052 §2.1: the well-known NAT64 prefix; the last 32 bits are the IPv4 address reached.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that traffic to ``ip`` ends up at, for the forms that carry one
    (IPv4-mapped, NAT64, 6to4)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def not_global(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public Internet address, or None when it is one."""
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("multicast", ip.is_multicast),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("not globally reachable", not ip.is_global),
    )
    for label, hit in checks:
        if hit:
            return label
    return None


def listed(ip: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    """True when ``ip`` is inside one of ``networks``."""
    return any(ip.version == net.version and ip in net for net in networks)


def refusal(ip: IPAddress, allow: Sequence[IPNetwork], key: str) -> str | None:
    """Why a report may not go to ``ip`` (naming the setting ``key`` that would allow it), or
    None when it may.

    An IPv6 address that embeds an IPv4 one is judged by the IPv4 address too, so
    ``::ffff:127.0.0.1`` is loopback and NAT64 ``64:ff9b::`` wrapping a public IPv4 address is
    public (docs/sender-rules.md §1).
    """
    inner = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if listed(ip, allow) or (inner is not None and listed(inner, allow)):
        return None
    # An IPv4-mapped address is only a spelling of the IPv4 one (its ::ffff:0:0/96 wrapper is
    # "reserved" to ipaddress); NAT64 and 6to4 must be global on both layers, except that the
    # NAT64 prefix itself is a translator's, not a destination's (RFC 6052).
    mapped = isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None
    nat64 = isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64
    for candidate in (inner,) if mapped or nat64 else (inner, ip):
        if candidate is None:
            continue
        why = not_global(candidate)
        if why is not None:
            shown = str(ip) if candidate is ip else f"{ip} (IPv4 {candidate})"
            return (
                f"{shown} is {why}; report destinations must be public addresses unless "
                f"listed in {key}"
            )
    return None
