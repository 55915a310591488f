"""The reporter's configuration: ``[reporter]``, ``[reporter.mail]``, ``[[reporter.mail.dkim]]``.

Checked strictly like ``[collectd]``: an unknown key or a bad value raises ConfigError naming
``reporter.<key>``. ``[reporter.https]`` and ``[dns]`` are checked by their own modules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tlsrpt_reporter.config.loader import Config
from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import ConfigError
from tlsrpt_reporter.report import sources

RECORD_SOURCES = ("datagram", "dns")


@dataclass(frozen=True)
class DkimConfig:
    """One ``[[reporter.mail.dkim]]`` table: one signature on every report mail."""

    domain: str
    selector: str
    key: str
    record: str = ""


@dataclass(frozen=True)
class MailConfig:
    """``[reporter.mail]``."""

    from_addr: str = ""
    envelope_from: str = ""
    relay: str = "localhost:25"
    relay_starttls: bool = False
    relay_username: str = ""
    relay_password_file: str = ""
    helo_name: str = ""
    dkim: tuple[DkimConfig, ...] = ()


@dataclass(frozen=True)
class ReporterConfig:
    """``[reporter]``; ``sources`` empty means the collector's own database."""

    organization_name: str = ""
    contact_info: str = ""
    sources: tuple[str, ...] = ()
    db: str = "/var/lib/tlsrpt-reporter/reporter.sqlite"
    grace: float = 1800.0
    spread: float = 14400.0
    retry_for: float = 86400.0
    # A source that fails postpones its day this long after grace; then the day is built with
    # what arrived (and the gap logged). source_timeout bounds one read of a cmd: source.
    source_deadline: float = 21600.0
    source_timeout: float = 300.0
    max_failure_details: int = 1000
    record_source: str = "datagram"
    never_report: tuple[str, ...] = ()
    max_reports_per_destination: int = 1000
    # RFC 8460 §1.1: also report DANE policies to the MX host they name, when it has a record.
    mx_host_reports: bool = True
    mail: MailConfig = field(default_factory=MailConfig)
    https: dict[str, Any] = field(default_factory=dict)

    def missing_identity(self) -> list[str]:
        """What must be set before anything may be sent (empty when complete)."""
        missing = []
        if not self.organization_name:
            missing.append("reporter.organization_name")
        if not self.contact_info:
            missing.append("reporter.contact_info")
        if not self.mail.from_addr:
            missing.append("reporter.mail.from")
        if not self.mail.dkim:
            missing.append("[[reporter.mail.dkim]] (at least one key)")
        return missing


def from_config(cfg: Config) -> ReporterConfig:
    """Check and convert the raw ``[reporter]`` table of a loaded configuration."""
    table = dict(cfg.reporter)
    mail = _mail(table.pop("mail", {}))
    https = table.pop("https", {})
    if not isinstance(https, dict):
        raise ConfigError("reporter.https must be a table")
    known = {f.name for f in dataclasses.fields(ReporterConfig)} - {"mail", "https"}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"unknown key reporter.{key}; known: {', '.join(sorted(known))}")
        values[key] = _check(key, value)
    if not values.get("sources"):
        values["sources"] = (cfg.collectd.db,)
    return ReporterConfig(mail=mail, https=https, **values)


def _check(key: str, value: Any) -> Any:
    name = f"reporter.{key}"
    if key in ("organization_name", "contact_info", "db"):
        _string(name, value)
        if key == "contact_info" and value:
            _address(name, value)
        return value
    if key in ("sources", "never_report"):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{name} must be a list of non-empty strings, got {value!r}")
        if key == "never_report":
            return tuple(_domain(name, v) for v in value)
        for source in value:
            if sources.is_command(source):
                try:
                    sources.command_words(source, "2000-01-01")
                except sources.SourceError as exc:
                    raise ConfigError(f"{name}: {exc}") from None
        return tuple(value)
    if key in ("grace", "spread", "retry_for", "source_deadline", "source_timeout"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if key in ("retry_for", "source_deadline") and value > 7 * 86400:
            raise ConfigError(f"{name} must be at most a week (604800), got {value!r}")
        if key == "source_timeout" and not value > 0:
            raise ConfigError(f"{name} must be more than 0 seconds, got {value!r}")
        return float(value)
    if key in ("max_failure_details", "max_reports_per_destination"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        return value
    if key == "mx_host_reports":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if key == "record_source":
        if value not in RECORD_SOURCES:
            raise ConfigError(f"{name} must be one of {', '.join(RECORD_SOURCES)}, got {value!r}")
        return value
    raise AssertionError(key)  # pragma: no cover - filtered by the caller


def _mail(table: Any) -> MailConfig:
    if not isinstance(table, dict):
        raise ConfigError("reporter.mail must be a table")
    table = dict(table)
    keys = table.pop("dkim", [])
    if not isinstance(keys, list):
        raise ConfigError("reporter.mail.dkim must be an array of tables ([[reporter.mail.dkim]])")
    renamed = {"from": "from_addr"}
    known = {f.name for f in dataclasses.fields(MailConfig)} - {"dkim", "from_addr"} | {"from"}
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = f"reporter.mail.{key}"
        if key not in known:
            raise ConfigError(f"unknown key {name}; known: {', '.join(sorted(known))}")
        if key == "relay_starttls":
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        else:
            _string(name, value)
            if key in ("from", "envelope_from") and value:
                _address(name, value)
            if key == "relay" and value != "direct":
                _relay(name, value)
        values[renamed.get(key, key)] = value
    return MailConfig(dkim=tuple(_dkim(i, k) for i, k in enumerate(keys)), **values)


def _dkim(index: int, table: Any) -> DkimConfig:
    where = f"reporter.mail.dkim[{index}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(table) - {"domain", "selector", "key", "record"}
    if unknown:
        raise ConfigError(f"unknown key {where}.{sorted(unknown)[0]}")
    for key in ("domain", "selector", "key"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise ConfigError(f"{where}.{key} must be set (a non-empty string)")
    record = table.get("record", "")
    _string(f"{where}.record", record)
    return DkimConfig(
        domain=_domain(f"{where}.domain", table["domain"]),
        selector=table["selector"],
        key=table["key"],
        record=record,
    )


def _string(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if any(ord(c) < 0x20 for c in value):
        raise ConfigError(f"{name} must not contain control characters")


def _address(name: str, value: str) -> None:
    local, _, domain = value.rpartition("@")
    if not local or any(c.isspace() or c in '<>"' for c in value):
        raise ConfigError(f"{name} must be an address like tlsrpt@example.net, got {value!r}")
    _domain(name, domain)


def _domain(name: str, value: str) -> str:
    try:
        return normalize_domain(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {value!r} is not a domain name ({exc})") from None


def _relay(name: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f'{name} must be "host:port" or "direct", got {value!r}')
