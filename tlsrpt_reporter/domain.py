"""Domain name normalisation: lower-case A-labels without a trailing dot (RFC 8460 §4.4); and
organisational domains, from the Public Suffix List."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

import idna

if TYPE_CHECKING:
    import tldextract

# Host-name labels; "_" is tolerated because the MTA reports what DNS names it used.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_NAME = 253


@functools.lru_cache(maxsize=4096)
def normalize_domain(name: str) -> str:
    """Return ``name`` as a lower-case A-label domain without trailing dot.

    Raises ValueError naming the problem when ``name`` is not a usable domain name.
    """
    # libtlsrpt passes the MTA's spelling through ("Example.COM." is real output).
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("empty domain name")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"not a valid internationalised domain name ({exc})") from None
        # UTS #46 maps ideographic and fullwidth full stops to ".": one may have been trailing.
        if name.endswith("."):
            name = name[:-1]
    name = name.lower()
    if len(name) > _MAX_NAME:
        raise ValueError(f"domain name longer than {_MAX_NAME} characters")
    for label in name.split("."):
        if not _LABEL.fullmatch(label):
            raise ValueError(f"invalid label {label[:70]!r}")
    return name


@functools.lru_cache(maxsize=1)
def _public_suffixes() -> tldextract.TLDExtract:
    # Imported here: the collector normalises names on every datagram and never needs the list.
    import tldextract  # noqa: PLC0415

    # The snapshot bundled with the package, nothing fetched (no network), nothing cached on
    # disk; the private section counts too, so foo.github.io is an organisation of its own.
    return tldextract.TLDExtract(
        cache_dir=None, suffix_list_urls=(), include_psl_private_domains=True
    )


def organizational_domain(name: str) -> str:
    """The organisational domain of a lower-case A-label ``name`` (as DMARC, RFC 7489 §3.2,
    defines it): its public suffix from the Public Suffix List and one more label.

    A name under no listed suffix gets the list's default rule "*" (its last label is the
    suffix); a name that is a public suffix itself is its own organisational domain.
    """
    parts = _public_suffixes()(name)
    top = parts.top_domain_under_public_suffix
    if top:
        return top
    if parts.suffix:
        return name
    return ".".join(name.split(".")[-2:])
