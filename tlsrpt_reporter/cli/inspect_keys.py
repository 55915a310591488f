"""Where ``inspect`` gets DKIM key records: DNS through the reporter's resolver (``[dns]`` of
the configuration), or key record files given with ``--dkim-key`` (offline).

A ``--dkim-key`` file holds one record as published: either the bare text
(``v=DKIM1; k=rsa; p=...``), which then answers for every selector and domain, or a zone-file
line (``sel._domainkey.example.net. IN TXT ( "..." "..." )``), which answers for its own name
only.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path

from tlsrpt_reporter.config.load import load
from tlsrpt_reporter.deliver.resolver import DnsTemporaryError, Resolver
from tlsrpt_reporter.errors import ConfigError, os_fix
from tlsrpt_reporter.report.inspect_dkim import KeyLookup, KeyLookupError

_ZONE_LINE = re.compile(
    r"^(?P<name>[^\s\"]+)\s+(?:\d+\s+)?(?:IN\s+)?(?:\d+\s+)?TXT\s+(?P<data>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_MAX_KEY_FILE = 64 * 1024


def key_lookup(
    config_path: str | None, key_files: Sequence[str], offline: bool
) -> KeyLookup | None:
    """The key source ``inspect`` was asked for: the files when any are given, else DNS, or
    None with ``offline`` (the signatures are then counted, not checked)."""
    if key_files:
        return _from_files(key_files)
    if offline:
        return None
    return _from_dns(config_path)


def _from_dns(config_path: str | None) -> KeyLookup:
    resolver: list[Resolver] = []  # made at the first signature: a folder of .json needs none

    def lookup(name: str) -> list[str]:
        if not resolver:
            resolver.append(Resolver(load(config_path).dns))
        try:
            return asyncio.run(resolver[0].txt_records(name))
        except DnsTemporaryError as exc:
            raise KeyLookupError(f"no DNS answer for {name} ({exc}); try again later") from None

    return lookup


def _from_files(paths: Sequence[str]) -> KeyLookup:
    named: dict[str, list[str]] = {}
    anywhere: list[str] = []
    for path in paths:
        name, record = parse_key_file(path)
        if name:
            named.setdefault(name, []).append(record)
        else:
            anywhere.append(record)

    def lookup(name: str) -> list[str]:
        return named.get(name.lower().rstrip("."), anywhere)

    return lookup


def parse_key_file(path: str) -> tuple[str, str]:
    """(the record's name, "" when the file gives none; the record text) of a ``--dkim-key``
    file. ConfigError naming the file when it holds no key record."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"--dkim-key {path}: {os_fix(exc, file)}") from None
    text = raw.decode("utf-8", "replace").strip()
    name = ""
    zone = _ZONE_LINE.match(text)
    if zone is not None and "=" not in zone["name"]:
        name, text = zone["name"].lower().rstrip("."), zone["data"]
    if '"' in text:
        text = re.sub(r"\\(.)", r"\1", "".join(_QUOTED.findall(text)))
    text = text.strip().strip("()").strip()
    if len(raw) > _MAX_KEY_FILE or "p=" not in text:
        raise ConfigError(
            f"--dkim-key {path}: not a DKIM key record (expected 'v=DKIM1; k=rsa; p=...' or a "
            "zone-file TXT line)"
        )
    return name, text
