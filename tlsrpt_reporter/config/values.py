"""What one configuration value may be: the checks ``config.load`` applies key by key.

This module owns the rules for single values and the wording of their errors: each check takes
the key's full name (as the operator writes it, e.g. ``reporter.mail.relay``) and the raw TOML
value, and returns the typed value or raises ConfigError naming the key, the value and what is
expected. It must not know the sections or their keys (``config.load`` does), nor read
anything but the one file a value names (``reporter.https.ca_file``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from typing import TypeGuard, TypeVar

from tlsrpt_reporter.config import fleet_values
from tlsrpt_reporter.config.schema import LOG_LEVELS, RECORD_SOURCES, IPNetwork
from tlsrpt_reporter.config.source_syntax import command_words, is_command, is_postgresql
from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import ConfigError

T = TypeVar("T")
Table = Mapping[str, object]
Check = Callable[[str, object], T]

_MAX_ID = 2**32 - 2
_MAX_DNS_TIMEOUT = 300.0
_MAX_HTTPS_TIMEOUT = 3600.0
_MAX_POSITIVE = 2**40
WEEK = 7 * 86400


def is_table(value: object) -> TypeGuard[Table]:
    """Whether a TOML value is a table (tomllib gives tables as dicts with string keys)."""
    return isinstance(value, dict)


class Fields:
    """The values of one table, each checked when taken; ``prefix`` + key names it in errors."""

    def __init__(self, table: Table, prefix: str) -> None:
        """Take values from ``table``; errors name ``prefix`` followed by the key."""
        self.table = table
        self.prefix = prefix

    def get(self, key: str, check: Check[T], default: T) -> T:
        """The checked value of ``key``, or ``default`` when the table does not set it."""
        if key not in self.table:
            return default
        return check(f"{self.prefix}{key}", self.table[key])


# --- [collectd] ---------------------------------------------------------------------------


def parse_mode(value: object, name: str = "socket_mode") -> int:
    """A file mode given as an octal string ("0660") or an integer."""
    if isinstance(value, str):
        try:
            mode = int(value, 8)
        except ValueError:
            raise ConfigError(f'{name} must be an octal mode like "0660", got {value!r}') from None
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        raise ConfigError(f'{name} must be an octal mode like "0660", got {value!r}')
    if not 0 <= mode <= 0o777:
        raise ConfigError(f'{name} must be between "0000" and "0777", got {value!r}')
    return mode


def parse_log_level(value: object, name: str = "log_level") -> str:
    """One of :data:`LOG_LEVELS`, case-insensitive."""
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise ConfigError(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.lower()


def mode(name: str, value: object) -> int:
    """:func:`parse_mode` in the argument order of a :data:`Check`."""
    return parse_mode(value, name)


def log_level(name: str, value: object) -> str:
    """:func:`parse_log_level` in the argument order of a :data:`Check`."""
    return parse_log_level(value, name)


def path_string(name: str, value: object) -> str:
    """A non-empty path."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{name} must be a non-empty path, got {value!r}")
    return value


def metrics_file(name: str, value: object) -> str:
    """The path of a file to write, or "" for none."""
    if not isinstance(value, str) or "\0" in value:
        raise ConfigError(
            f'{name} must be a file path (string; "" for none), e.g. '
            f'"/var/lib/prometheus/node-exporter/tlsrpt-collectd.prom", got {value!r}'
        )
    if value.endswith("/"):
        raise ConfigError(f"{name} must name a file, not a directory, got {value!r}")
    return value


def directory(name: str, value: object) -> str:
    """The path of a directory to write into, or "" for none."""
    if not isinstance(value, str) or "\0" in value:
        raise ConfigError(f'{name} must be a directory path (string; "" for none), got {value!r}')
    return value


def socket_group(name: str, value: object) -> str:
    """A group name or a numeric gid, kept as a string (the collector looks a name up and takes
    digits as the gid itself)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(_numeric_id(name, value, value, "gid"))
    if not isinstance(value, str) or "\0" in value:
        raise ConfigError(
            f'{name} must be a group name or a numeric gid, e.g. "postfix" or 101, got {value!r}'
        )
    if _is_digits(value):
        _numeric_id(name, int(value), value, "gid")
    return value


def ids(kind: str, id_name: str) -> Check[tuple[str | int, ...]]:
    """A list of names and numeric ids; digit strings become ids, names stay for the collector
    to resolve (the reporter's host may lack the MTA's users, and reads the same file)."""

    def check(name: str, value: object) -> tuple[str | int, ...]:
        if not isinstance(value, list):
            raise ConfigError(
                f"{name} must be a list of {kind} names or numeric {id_name}s, "
                f'e.g. ["postfix", 0], got {value!r}'
            )
        entries: list[str | int] = []
        for entry in value:
            if isinstance(entry, int) and not isinstance(entry, bool):
                entries.append(_numeric_id(name, entry, entry, id_name))
            elif isinstance(entry, str) and _is_digits(entry):
                entries.append(_numeric_id(name, int(entry), entry, id_name))
            elif isinstance(entry, str) and entry and "\0" not in entry and not entry.isspace():
                entries.append(entry)
            else:
                raise ConfigError(
                    f"{name} entries must be {kind} names or numeric {id_name}s, got {entry!r}"
                )
        return tuple(entries)

    return check


def _is_digits(value: str) -> bool:
    # ASCII only: str.isdigit() also takes characters such as "²" that int() refuses.
    return value.isascii() and value.isdigit()


def _numeric_id(name: str, number: int, given: object, id_name: str) -> int:
    # 4294967295 is (uid_t)-1, which the kernel never gives a process.
    if not 0 <= number <= _MAX_ID:
        raise ConfigError(f"{name}: a {id_name} must be between 0 and {_MAX_ID}, got {given!r}")
    return number


def number(low: float, high: float) -> Check[float]:
    """A number of seconds from ``low`` to ``high``."""

    def check(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value!r}")
        return float(value)

    return check


def integer(low: int, high: int) -> Check[int]:
    """A whole number from ``low`` to ``high``."""

    def check(name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value!r}")
        return value

    return check


# --- [reporter], [reporter.mail], [[reporter.mail.dkim]] ---------------------------------------


def string(name: str, value: object) -> str:
    """Any string without control characters (they would break mail headers and logs)."""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if any(ord(c) < 0x20 for c in value):
        raise ConfigError(f"{name} must not contain control characters")
    return value


def address(name: str, value: object) -> str:
    """A mail address like tlsrpt@example.net, or "" for none."""
    text = string(name, value)
    if text:
        local, _, domain_part = text.rpartition("@")
        if not local or any(c.isspace() or c in '<>"' for c in text):
            raise ConfigError(f"{name} must be an address like tlsrpt@example.net, got {text!r}")
        domain(name, domain_part)
    return text


def instance_id(name: str, value: object) -> str:
    """1 to 32 ASCII letters and digits: this instance's part of every Report-ID."""
    if not (isinstance(value, str) and 0 < len(value) <= 32 and value.isascii()
            and value.isalnum()):  # fmt: skip
        raise ConfigError(f"{name} must be 1 to 32 letters and digits (A-Z, a-z, 0-9), got "
                          f"{value!r}")  # fmt: skip
    return value


def domain(name: str, value: str) -> str:
    """A domain name, normalised (lower-case A-labels, no trailing dot)."""
    try:
        return normalize_domain(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {value!r} is not a domain name ({exc})") from None


def relay(name: str, value: object) -> str:
    """``host:port``, or ``direct`` (deliver to the recipients' MX hosts)."""
    text = string(name, value)
    if text != "direct":
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f'{name} must be "host:port" or "direct", got {text!r}')
    return text


def boolean(name: str, value: object) -> bool:
    """true or false (TOML's, not a string or a number)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _strings(name: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name} must be a list of non-empty strings, got {value!r}")
    return [str(v) for v in value]


def source_list(name: str, value: object) -> tuple[str, ...]:
    """Collector databases, ``cmd:`` exports and the fleet's ``postgresql://`` database; a
    command must split into words, a URL must not hold a password."""
    entries = _strings(name, value)
    for source in entries:
        if is_postgresql(source):
            fleet_values.database(name, source, url_only=True)
        elif is_command(source):
            try:
                command_words(source, "2000-01-01")
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
    return tuple(entries)


def domain_list(name: str, value: object) -> tuple[str, ...]:
    """Domain names, normalised."""
    return tuple(domain(name, entry) for entry in _strings(name, value))


def record_source(name: str, value: object) -> str:
    """Where a domain's TLSRPT record comes from: one of :data:`RECORD_SOURCES`."""
    if not isinstance(value, str) or value not in RECORD_SOURCES:
        raise ConfigError(f"{name} must be one of {', '.join(RECORD_SOURCES)}, got {value!r}")
    return value


def sending_mta_ip(name: str, value: object) -> str:
    """The words as-seen or omit-private, or a global IP address replacing non-global ones."""
    if value in ("as-seen", "omit-private"):
        return str(value)
    with contextlib.suppress(ValueError):  # "-": ip_address() would take 1 for "0.0.0.1"
        if (ip := ipaddress.ip_address(value if isinstance(value, str) else "-")).is_global:
            return str(ip)
    raise ConfigError(f'{name} must be "as-seen", "omit-private" or a global IP, got {value!r}')


# --- [reporter.https] ------------------------------------------------------------------------


def https_timeout(name: str, value: object) -> float:
    """A positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name}: {value!r} is not a number of seconds")
    if not (math.isfinite(value) if isinstance(value, float) else True) or value <= 0:
        raise ConfigError(f"{name}: {value!r} must be a positive number of seconds")
    if value > _MAX_HTTPS_TIMEOUT:  # also keeps float() of a huge TOML integer finite
        raise ConfigError(f"{name}: {value!r} must be at most {_MAX_HTTPS_TIMEOUT:g} seconds")
    return float(value)


def networks(name: str, value: object) -> tuple[IPNetwork, ...]:
    """A list of CIDRs, each written as its network address."""
    if not isinstance(value, list):
        raise ConfigError(f'{name}: {value!r} is not a list of CIDRs, e.g. ["10.0.0.0/8"]')
    found: list[IPNetwork] = []
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"{name}: {item!r} is not a CIDR string")
        try:
            found.append(ipaddress.ip_network(item.strip()))
        except ValueError as exc:
            # strict parsing: "127.0.0.1/8" is refused rather than silently widened or narrowed.
            raise ConfigError(
                f"{name}: {item!r} is not a network ({exc}); "
                'write the network address, e.g. "127.0.0.0/8"'
            ) from None
    return tuple(found)


def flag(name: str, value: object) -> bool:
    """A boolean, in the wording of ``[reporter.https]``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: {value!r} is not a boolean")
    return value


def positive_integer(name: str, value: object) -> int:
    """A whole number > 0, in the wording of ``[reporter.https]``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}: {value!r} is not a positive integer")
    if value > _MAX_POSITIVE:
        raise ConfigError(f"{name}: {value!r} must be at most {_MAX_POSITIVE}")
    return value


def ca_file(name: str, value: object) -> str | None:
    """An existing PEM bundle, or None for "" (the system store)."""
    if not isinstance(value, str):
        raise ConfigError(f"{name}: {value!r} is not a path")
    if value and not os.path.isfile(value):
        raise ConfigError(
            f"{name}: {value!r} is not a file; name a PEM bundle of CA "
            "certificates, or leave it empty for the system store"
        )
    return value or None


# --- [dns] ------------------------------------------------------------------------------------


def nameservers(name: str, value: object) -> tuple[str, ...]:
    """IP addresses, normalised; empty means the system's (resolv.conf)."""
    if not isinstance(value, list | tuple):
        raise ConfigError(
            f"{name} must be a list of IP addresses (empty: the system's), got {value!r}"
        )
    servers: list[str] = []
    for item in value:
        try:
            if not isinstance(item, str):
                raise ValueError(item)  # ip_address() would take 1 for "0.0.0.1"
            servers.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ConfigError(
                f'{name} must hold IP addresses like "192.0.2.53", got {item!r}'
            ) from None
    return tuple(servers)


def port(name: str, value: object) -> int:
    """A TCP/UDP port number."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{name} must be a whole number between 1 and 65535, got {value!r}")
    return value


def dns_timeout(name: str, value: object) -> float:
    """Seconds for one lookup: more than 0, at most five minutes."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 < value <= _MAX_DNS_TIMEOUT:
        raise ConfigError(
            f"{name} must be more than 0 and at most {_MAX_DNS_TIMEOUT:g} seconds, got {value!r}"
        )
    return float(value)
