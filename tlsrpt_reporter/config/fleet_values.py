"""The values of a fleet setup (docs/fleet.md): where the fleet's PostgreSQL is, and host names.

This module owns two rules: a PostgreSQL address in this file (``push.database``, a
``postgresql://`` entry of ``reporter.sources``) never carries a password, and a host name
(``push.host``, ``reporter.expected_hosts``) is one the fleet tables can key rows by. Like
:mod:`.values` it checks single values and names the key in its errors; it must not connect.
"""

from __future__ import annotations

import re
import urllib.parse

from tlsrpt_reporter.config.source_syntax import is_postgresql
from tlsrpt_reporter.errors import ConfigError

# What libpq reads a password from instead, in the words of an error's fix.
CREDENTIALS_FIX = (
    "put the password in ~/.pgpass of the user the command runs as (mode 0600), in a file "
    "named by PGPASSFILE, or use a service (service=NAME) from the service file "
    "(~/.pg_service.conf or PGSERVICEFILE) together with one of those; docs/fleet.md"
)
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
# ``password = x`` in a key=value conninfo: at its start or after white space.
_CONNINFO_PASSWORD = re.compile(r"(?:^|\s)password\s*=", re.IGNORECASE)


def has_password(conninfo: str) -> bool:
    """Whether a ``postgresql://`` URL or a ``key=value`` conninfo carries a password."""
    if is_postgresql(conninfo):
        parts = urllib.parse.urlsplit(conninfo)
        userinfo = parts.netloc.rpartition("@")[0]
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        return ":" in userinfo or "password" in query
    return bool(_CONNINFO_PASSWORD.search(conninfo))


def database(name: str, value: object, *, url_only: bool = False) -> str:
    """A PostgreSQL address without a password: a ``postgresql://`` URL, or (unless
    ``url_only``) a libpq ``key=value`` conninfo. The value is never echoed: it might hold
    the very password refused."""
    shape = "a postgresql:// URL" if url_only else "a postgresql:// URL or a libpq conninfo"
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(
            f'{name} must be {shape}, e.g. "postgresql://tlsrpt@db.example.net/tlsrpt_fleet"'
        )
    if url_only and not is_postgresql(value):
        raise ConfigError(f"{name} must be {shape}")
    if has_password(value):
        raise ConfigError(f"{name} contains a password, which never goes into this file: "
                          f"{CREDENTIALS_FIX}")  # fmt: skip
    return value


def optional_database(name: str, value: object) -> str:
    """:func:`database`, or "" for none (push not set up)."""
    return "" if value == "" else database(name, value)


def host(name: str, value: object) -> str:
    """A host name as the fleet tables key it: letters, digits, dots, hyphens, underscores."""
    if not isinstance(value, str) or not _HOST.fullmatch(value):
        raise ConfigError(
            f'{name} must be a host name (letters, digits, ".", "-", "_"; at most 253), '
            f'e.g. "mta1", got {value!r}'
        )
    return value


def optional_host(name: str, value: object) -> str:
    """:func:`host`, or "" for the machine's own host name."""
    return "" if value == "" else host(name, value)


def hosts(name: str, value: object) -> tuple[str, ...]:
    """A list of distinct host names."""
    if not isinstance(value, list):
        raise ConfigError(f'{name} must be a list of host names, e.g. ["mta1", "mta2"]')
    names = tuple(host(name, entry) for entry in value)
    if len(set(names)) != len(names):
        raise ConfigError(f"{name} names a host twice")
    return names


def state_database(name: str, value: object) -> str:
    """``reporter.db``: a SQLite file path, or a ``postgresql://`` URL (without a password)
    that several reporters may share (docs/fleet.md)."""
    if isinstance(value, str) and is_postgresql(value):
        return database(name, value, url_only=True)
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(
            f"{name} must be the path of the state database (SQLite) or a postgresql:// URL, "
            f"got {value!r}"
        )
    return value
