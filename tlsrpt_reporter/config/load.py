"""Reading the configuration: one TOML file, read once, every section checked, a typed Config.

This module owns turning the file (docs/operating.md) and the command
line's overrides into :mod:`tlsrpt_reporter.config.schema` objects: which sections and keys
exist, which check each key's value gets (:mod:`tlsrpt_reporter.config.values`), and the
defaults of keys not given. An unknown section or key, or a bad value, raises ConfigError
naming the key, the value and what was expected; the commands turn that into exit code 2.

It must not act on the configuration (bind, connect, load keys, look up users): what the
configured paths and keys are worth on this host is ``config.check``'s business.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from tlsrpt_reporter.config import fleet_values, identity, sending_values
from tlsrpt_reporter.config import numbers as n
from tlsrpt_reporter.config import values as v
from tlsrpt_reporter.config.schema import (
    CollectdConfig,
    Config,
    DkimConfig,
    DnsSettings,
    HttpsSettings,
    MailConfig,
    PushConfig,
    ReporterConfig,
)
from tlsrpt_reporter.config.source_syntax import is_postgresql
from tlsrpt_reporter.config.values import Fields, Table
from tlsrpt_reporter.errors import ConfigError, os_fix

DEFAULT_CONFIG_PATH = Path("/etc/tlsrpt-reporter/config.toml")
SECTIONS = ("collectd", "reporter", "dns", "push")
# The tables check-config reports among its other findings instead of stopping (see load()).
DEFERRABLE = ("dns", "reporter.https")

_HTTPS_KEYS = ("timeout", "allow_private", "verify_certificates", "max_response_bytes", "ca_file")
_DNS_KEYS = ("nameservers", "port", "timeout")
_DKIM_KEYS = ("domain", "selector", "key", "record")

T = TypeVar("T")


def load(path: str | Path | None, *, deferred: dict[str, ConfigError] | None = None) -> Config:
    """Read and check the whole configuration.

    ``None`` means the default path, whose absence means "all defaults"; a file named
    explicitly must exist. With ``deferred``, an error inside one of the :data:`DEFERRABLE`
    tables is stored there under the table's name and that table keeps its defaults, so that
    check-config can go on and report it among its other findings (as it always has).
    """
    data, source = _read(path)
    return parse(data, source, deferred=deferred)


def load_collectd(path: str | Path | None) -> CollectdConfig:
    """Read the file for a program of the MTA's host: ``[collectd]`` checked, the other sections
    only required to be tables.

    The file is shared with the reporter, which may run elsewhere: its sections can name files
    that exist only on its host (``reporter.https.ca_file``), and must not stop the collector.
    """
    data, source = _read(path)
    collectd, _, _ = _head(data, _where(source))
    return collectd


def load_push(path: str | Path | None) -> tuple[CollectdConfig, PushConfig]:
    """Read the file for ``push`` on an MTA host: ``[collectd]`` (its database) and ``[push]``
    checked, the other sections only required to be tables (as :func:`load_collectd`)."""
    data, source = _read(path)
    collectd, _, _ = _head(data, _where(source))
    return collectd, _push(_section(data, "push", _where(source)), collectd)


def parse(
    data: Mapping[str, object],
    source: Path | None = None,
    *,
    deferred: dict[str, ConfigError] | None = None,
) -> Config:
    """Check an already-parsed TOML document (``deferred`` as in :func:`load`)."""
    collectd, reporter_table, dns_table = _head(data, _where(source))
    reporter, https_table = _reporter(reporter_table, collectd)
    push = _push(_section(data, "push", _where(source)), collectd)
    # Checked last, as when their own modules read them: a bad [dns] or [reporter.https] table
    # is reported after everything else.
    dns = _deferrable("dns", _dns, dns_table, DnsSettings(), deferred)
    https = _deferrable("reporter.https", _https, https_table, HttpsSettings(), deferred)
    return Config(collectd, dataclasses.replace(reporter, https=https), dns, push, source)


def override_collectd(cfg: CollectdConfig, **values: object) -> CollectdConfig:
    """Apply command-line overrides (None means "not given"), checked like the file's values."""
    given = {key: value for key, value in values.items() if value is not None}
    return _collectd(given, "command line", cfg)


# --- the file and its sections ------------------------------------------------------------


def _read(path: str | Path | None) -> tuple[dict[str, object], Path | None]:
    explicit = path is not None
    file = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {file} does not exist") from None
        return {}, None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {os_fix(exc, file)}") from None
    try:
        return tomllib.loads(raw.decode("utf-8")), file
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{file} is not valid TOML: too deeply nested") from None


def _where(source: Path | None) -> str:
    return str(source) if source else "config"


def _head(data: Mapping[str, object], where: str) -> tuple[CollectdConfig, Table, Table]:
    """The checked ``[collectd]`` and the raw ``[reporter]`` and ``[dns]`` tables."""
    for name in data:
        if name not in SECTIONS:
            raise ConfigError(f"{where}: unknown section [{name}]; known: {', '.join(SECTIONS)}")
    collectd = _collectd(_section(data, "collectd", where), where, CollectdConfig())
    return collectd, _section(data, "reporter", where), _section(data, "dns", where)


def _section(data: Mapping[str, object], name: str, where: str) -> Table:
    value = data.get(name, {})
    if not v.is_table(value):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return value


def _deferrable(
    name: str,
    check: Callable[[Table], T],
    table: Table,
    default: T,
    deferred: dict[str, ConfigError] | None,
) -> T:
    if deferred is None:
        return check(table)
    try:
        return check(table)
    except ConfigError as exc:
        deferred[name] = exc
        return default


# --- the sections -------------------------------------------------------------------------


def _collectd(table: Table, where: str, base: CollectdConfig) -> CollectdConfig:
    known = sorted(f.name for f in dataclasses.fields(CollectdConfig))
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{where}: unknown key collectd.{key}; known keys: {', '.join(known)}"
            )
    f, b = Fields(table, f"{where}: collectd."), base
    return CollectdConfig(
        socket=f.get("socket", v.path_string, b.socket),
        socket_mode=f.get("socket_mode", v.mode, b.socket_mode),
        socket_group=f.get("socket_group", v.socket_group, b.socket_group),
        allowed_users=f.get("allowed_users", v.ids("user", "uid"), b.allowed_users),
        allowed_groups=f.get("allowed_groups", v.ids("group", "gid"), b.allowed_groups),
        db=f.get("db", v.path_string, b.db),
        flush_interval=f.get("flush_interval", v.number(0.01, 3600.0), b.flush_interval),
        retention_days=f.get("retention_days", v.integer(1, 3660), b.retention_days),
        max_datagram_size=f.get(
            "max_datagram_size", v.integer(1024, 16 * 1024 * 1024), b.max_datagram_size
        ),
        max_pending_keys=f.get(
            "max_pending_keys", v.integer(1000, 100_000_000), b.max_pending_keys
        ),
        max_backlog_bytes=f.get(
            "max_backlog_bytes", v.integer(1024 * 1024, 16 * 1024**3), b.max_backlog_bytes
        ),
        max_held_bytes=f.get(
            "max_held_bytes", v.integer(8 * 1024 * 1024, 16 * 1024**3), b.max_held_bytes
        ),
        max_failure_details=f.get(
            "max_failure_details", v.integer(1, 1_000_000), b.max_failure_details
        ),
        log_level=f.get("log_level", v.log_level, b.log_level),
        metrics_file=f.get("metrics_file", v.metrics_file, b.metrics_file),
    )


def _reporter(table: Table, collectd: CollectdConfig) -> tuple[ReporterConfig, Table]:
    """``[reporter]`` with ``[reporter.mail]`` (``https`` still at its defaults), and the raw
    ``[reporter.https]`` table."""
    mail = _mail(table.get("mail", {}))
    https = table.get("https", {})
    if not v.is_table(https):
        raise ConfigError("reporter.https must be a table")
    known = sorted({f.name for f in dataclasses.fields(ReporterConfig)} - {"mail", "https"})
    for key in table:
        if key not in known and key not in ("mail", "https"):
            raise ConfigError(f"unknown key reporter.{key}; known: {', '.join(known)}")
    f, d = Fields(table, "reporter."), ReporterConfig()
    cfg = ReporterConfig(
        organization_name=f.get("organization_name", v.string, d.organization_name),
        contact_info=f.get("contact_info", identity.contact_info, d.contact_info),
        # Empty: the collector's own database, the usual single-host setup.
        sources=f.get("sources", v.source_list, d.sources) or (collectd.db,),
        db=f.get("db", fleet_values.state_database, d.db),
        grace=f.get("grace", n.seconds(), d.grace),
        spread=f.get("spread", n.seconds(), d.spread),
        retry_for=f.get("retry_for", n.seconds(v.WEEK), d.retry_for),
        source_deadline=f.get("source_deadline", n.seconds(v.WEEK), d.source_deadline),
        source_timeout=f.get("source_timeout", n.seconds(positive=True), d.source_timeout),
        max_failure_details=f.get("max_failure_details", n.count, d.max_failure_details),
        record_source=f.get("record_source", v.record_source, d.record_source),
        never_report=f.get("never_report", v.domain_list, d.never_report),
        max_reports_per_destination=f.get(
            "max_reports_per_destination", n.count, d.max_reports_per_destination
        ),
        max_destinations_per_host=f.get(
            "max_destinations_per_host", n.count, d.max_destinations_per_host
        ),
        delivery_lanes=f.get("delivery_lanes", v.integer(1, 256), d.delivery_lanes),
        attempt_deadline=f.get("attempt_deadline", n.seconds(positive=True), d.attempt_deadline),
        dead_after_days=f.get("dead_after_days", v.integer(0, 366), d.dead_after_days),
        suppress_for=f.get("suppress_for", n.seconds(positive=True), d.suppress_for),
        mx_host_reports=f.get("mx_host_reports", v.boolean, d.mx_host_reports),
        instance_id=f.get("instance_id", v.instance_id, d.instance_id),
        sending_mta_ip=f.get("sending_mta_ip", v.sending_mta_ip, d.sending_mta_ip),
        summary_html=f.get("summary_html", v.directory, d.summary_html),
        redirect=f.get("redirect", sending_values.redirect, d.redirect),
        expected_hosts=f.get("expected_hosts", fleet_values.hosts, d.expected_hosts),
        mail=mail,
    )
    if cfg.expected_hosts and not any(is_postgresql(s) for s in cfg.sources):
        raise ConfigError("reporter.expected_hosts names the hosts that push to the fleet's "
                          "PostgreSQL, but reporter.sources has no postgresql:// entry: add "
                          "it, or remove expected_hosts (docs/fleet.md)")  # fmt: skip
    return cfg, https


def _push(table: Table, collectd: CollectdConfig) -> PushConfig:
    known = sorted(f.name for f in dataclasses.fields(PushConfig))
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown key push.{key}; known: {', '.join(known)}")
    f, d = Fields(table, "push."), PushConfig()
    cfg = PushConfig(
        database=f.get("database", fleet_values.optional_database, d.database),
        host=f.get("host", fleet_values.optional_host, d.host),
        days=f.get("days", v.integer(0, 366), d.days),
    )
    if cfg.database and cfg.days >= collectd.retention_days:
        raise ConfigError(
            f"push.days ({cfg.days}) must be less than collectd.retention_days "
            f"({collectd.retention_days}): a day the collector has deleted would be pushed "
            "as empty, deleting it from the fleet's database"
        )
    return cfg


def _mail(table: object) -> MailConfig:
    if not v.is_table(table):
        raise ConfigError("reporter.mail must be a table")
    keys = table.get("dkim", [])
    if not isinstance(keys, list):
        raise ConfigError("reporter.mail.dkim must be an array of tables ([[reporter.mail.dkim]])")
    # The file says "from"; the schema says from_addr (from is a Python keyword).
    known = sorted(
        {f.name for f in dataclasses.fields(MailConfig)} - {"dkim", "from_addr"} | {"from"}
    )
    for key in table:
        if key not in known and key != "dkim":
            raise ConfigError(f"unknown key reporter.mail.{key}; known: {', '.join(known)}")
    f, d = Fields(table, "reporter.mail."), MailConfig()
    return MailConfig(
        from_addr=f.get("from", v.address, d.from_addr),
        envelope_from=f.get("envelope_from", v.address, d.envelope_from),
        relay=f.get("relay", v.relay, d.relay),
        relay_starttls=f.get("relay_starttls", v.boolean, d.relay_starttls),
        relay_username=f.get("relay_username", v.string, d.relay_username),
        relay_password_file=f.get("relay_password_file", v.string, d.relay_password_file),
        helo_name=f.get("helo_name", v.string, d.helo_name),
        allow_private=f.get("allow_private", v.networks, d.allow_private),
        dkim=tuple(_dkim(index, entry) for index, entry in enumerate(keys)),
        sign_by=_signer(f.get("sign_by", sending_values.sign_by, d.sign_by), table, keys),
    )


def _signer(sign_by: str, table: Table, keys: list[object]) -> str:
    """``sign_by``, refused when it contradicts the other keys of ``[reporter.mail]``."""
    if sign_by != "relay":
        return sign_by
    if keys:
        raise ConfigError(
            'reporter.mail.sign_by = "relay" signs with no key of ours, but '
            f"{len(keys)} [[reporter.mail.dkim]] tables are set: remove them, or set "
            'sign_by = "reporter"'
        )
    if table.get("relay") == "direct":
        raise ConfigError(
            'reporter.mail.sign_by = "relay" needs a relay that signs, but reporter.mail.relay '
            'is "direct": name the signing relay as "host:port", or set sign_by = "reporter"'
        )
    return sign_by


def _dkim(index: int, table: object) -> DkimConfig:
    where = f"reporter.mail.dkim[{index}]"
    if not v.is_table(table):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(_DKIM_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}")
    required: dict[str, str] = {}
    for key in ("domain", "selector", "key"):
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{key} must be set (a non-empty string)")
        required[key] = value
    return DkimConfig(
        domain=v.domain(f"{where}.domain", required["domain"]),
        selector=required["selector"],
        key=required["key"],
        record=v.string(f"{where}.record", table.get("record", "")),
    )


def _https(table: Table) -> HttpsSettings:
    unknown = sorted(set(table) - set(_HTTPS_KEYS))
    if unknown:
        raise ConfigError(
            f"reporter.https.{unknown[0]}: unknown key; the known keys are {', '.join(_HTTPS_KEYS)}"
        )
    f, d = Fields(table, "reporter.https."), HttpsSettings()
    return HttpsSettings(
        timeout=f.get("timeout", v.https_timeout, d.timeout),
        allow_private=f.get("allow_private", v.networks, d.allow_private),
        verify_certificates=f.get("verify_certificates", v.flag, d.verify_certificates),
        max_response_bytes=f.get("max_response_bytes", v.positive_integer, d.max_response_bytes),
        ca_file=f.get("ca_file", v.ca_file, d.ca_file),
    )


def _dns(table: Table) -> DnsSettings:
    for key in table:
        if key not in _DNS_KEYS:
            raise ConfigError(f"unknown key dns.{key}; known keys: {', '.join(_DNS_KEYS)}")
    f, d = Fields(table, "dns."), DnsSettings()
    return DnsSettings(
        nameservers=f.get("nameservers", v.nameservers, d.nameservers),
        port=f.get("port", v.port, d.port),
        timeout=f.get("timeout", v.dns_timeout, d.timeout),
    )
