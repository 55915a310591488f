"""dnspython's resolver as the ``[dns]`` settings (``config.schema.DnsSettings``) make it: the
servers (or resolv.conf's), one port and timeout for all, no search list, an EDNS buffer that
avoids fragmentation. Only ``deliver.resolver`` queries through it.
"""

from __future__ import annotations

import logging

import dns.asyncresolver
import dns.exception

from tlsrpt_reporter.config.schema import DnsSettings

log = logging.getLogger("tlsrpt-reporter")

# What glibc's stub resolver uses when resolv.conf names no server.
FALLBACK_NAMESERVER = "127.0.0.1"
# DNS flag day 2020: an EDNS buffer that avoids IP fragmentation; larger answers go over TCP.
EDNS_PAYLOAD = 1232


def make_resolver(settings: DnsSettings, resolv_conf: str) -> dns.asyncresolver.Resolver:
    """The resolver of ``settings``; ``resolv_conf`` is read only when they name no server."""
    if settings.nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = list(settings.nameservers)
    else:
        try:
            resolver = dns.asyncresolver.Resolver(filename=resolv_conf)
        except (dns.exception.DNSException, OSError, ValueError, UnicodeError) as exc:
            log.warning(
                "cannot use the system resolver configuration %s (%s); querying %s instead: "
                "set dns.nameservers to choose the servers",
                resolv_conf, exc, FALLBACK_NAMESERVER,
            )  # fmt: skip
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [FALLBACK_NAMESERVER]
    # Applies to every server that has no port of its own, resolv.conf's included.
    resolver.port = settings.port
    resolver.timeout = settings.timeout
    resolver.lifetime = settings.timeout
    # Names are queried as absolute names: no search list, no ndots, whatever resolv.conf says.
    resolver.search = []
    resolver.use_search_by_default = False
    resolver.use_edns(0, 0, EDNS_PAYLOAD)
    return resolver
