"""Domain name normalisation: lower-case A-labels without a trailing dot (RFC 8460 §4.4)."""

from __future__ import annotations

import functools
import re

import idna

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
