"""The configuration's shape: one frozen dataclass per section or table of the TOML file.

This module owns the names, types and defaults of every key (docs/operating.md lists them):
``[collectd]``, ``[reporter]``, ``[reporter.mail]``, ``[[reporter.mail.dkim]]``,
``[reporter.https]``, ``[dns]`` and ``[push]`` (docs/fleet.md), and :class:`Config` holding
them all. ``HttpsSettings`` and ``DnsSettings`` are the objects ``deliver.https`` and
``deliver.resolver`` work with.

It must not read files or check values: ``config.load`` builds these objects from the TOML
file and refuses what does not fit; code that builds them directly (tests, the demo) is
trusted to pass sensible values.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from tlsrpt_reporter.config.source_syntax import with_expected_hosts

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOG_LEVELS = ("debug", "info", "warning", "error")
RECORD_SOURCES = ("datagram", "dns")
SIGNERS = ("reporter", "relay")


@dataclass(frozen=True)
class CollectdConfig:
    """The ``[collectd]`` section."""

    # Inside Postfix's queue directory, so chrooted smtp(8) reaches it as run/tlsrpt/tlsrpt.sock.
    socket: str = "/var/spool/postfix/run/tlsrpt/tlsrpt.sock"
    socket_mode: int = 0o660
    # A group name, or a gid as digits (a chrooted Postfix may run with a gid the host lacks).
    socket_group: str = ""
    # Who may write, checked per datagram through SO_PASSCRED: a datagram passes when its
    # sender's uid is in allowed_users or its gid in allowed_groups. Entries are names (resolved
    # by the collector at start) or numeric ids; both empty = whoever the file mode lets in.
    allowed_users: tuple[str | int, ...] = ()
    allowed_groups: tuple[str | int, ...] = ()
    db: str = "/var/lib/tlsrpt-reporter/collectd.sqlite"
    flush_interval: float = 1.0
    retention_days: int = 14
    # docs/protocol.md: libtlsrpt datagrams reach ~200 KB at most; anything larger is rejected.
    max_datagram_size: int = 262_144
    # Memory bounds while the database cannot be written, and while the decoder lags behind.
    max_pending_keys: int = 2_000_000
    max_backlog_bytes: int = 64 * 1024 * 1024
    # Estimated bytes of counts held between writes (an early write at half of it), and the
    # distinct failure details held per policy between writes (reporter.max_failure_details
    # decides how many of them a report carries).
    max_held_bytes: int = 64 * 1024 * 1024
    max_failure_details: int = 1000
    log_level: str = "info"
    # Counters in Prometheus text format for node-exporter's textfile collector; "" = off.
    metrics_file: str = ""


@dataclass(frozen=True)
class DkimConfig:
    """One ``[[reporter.mail.dkim]]`` table: one signature on every report mail."""

    domain: str
    selector: str
    key: str
    # The published TXT record, to check the key against without DNS; "" = look it up.
    record: str = ""


@dataclass(frozen=True)
class MailConfig:
    """``[reporter.mail]``; ``from_addr`` is the file's ``from`` (a Python keyword)."""

    from_addr: str = ""
    envelope_from: str = ""
    relay: str = "localhost:25"
    relay_starttls: bool = False
    relay_username: str = ""
    relay_password_file: str = ""
    helo_name: str = ""
    allow_private: tuple[IPNetwork, ...] = ()
    dkim: tuple[DkimConfig, ...] = ()
    # Who DKIM-signs the report mail: "reporter" (the [[reporter.mail.dkim]] keys) or "relay"
    # (no key of ours: the relay's signer signs, for sites that sign all mail in the MTA).
    sign_by: str = "reporter"


@dataclass(frozen=True)
class HttpsSettings:
    """``[reporter.https]``: how reports are POSTed and where they may go."""

    timeout: float = 30.0
    allow_private: tuple[IPNetwork, ...] = ()
    verify_certificates: bool = True
    max_response_bytes: int = 65536
    # None = the certifi bundle; the file's "" means the same.
    ca_file: str | None = None


@dataclass(frozen=True)
class ReporterConfig:
    """``[reporter]``; ``sources`` empty means the collector's own database (the loader fills
    it in from ``collectd.db``)."""

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
    # A record may list many rua on one host (RFC 8460 §7): each report goes to at most this
    # many of them; the others are recorded as skipped.
    max_destinations_per_host: int = 2
    # Deliveries to different hosts run side by side in this many lanes (one host's one after
    # another), so a slow host holds up one lane, not the whole pass.
    delivery_lanes: int = 4
    # Seconds one delivery attempt may take in all (lookups, connect, TLS, transfer, answer).
    attempt_deadline: float = 300.0
    # A destination to which every delivery failed at its side on this many days in a row (days
    # with attempts) gets no report for suppress_for seconds (deliver.dead); 0 = never.
    dead_after_days: int = 7
    suppress_for: float = 30 * 86400.0
    # RFC 8460 §1.1: also report DANE policies to the MX host they name, when it has a record.
    mx_host_reports: bool = True
    # RFC 8460 §4.4: part of every Report-ID, so that two reporter instances never send the same
    # one; "" = the random id kept in the state database (store.instance).
    instance_id: str = ""
    # What receivers see of our own sending-mta-ip: "as-seen", "omit-private" (a non-global
    # address is left out) or a global IP address that replaces every non-global one.
    sending_mta_ip: str = "as-seen"
    # A directory: after each send the summary page (index.html) is written there; "" = off.
    summary_html: str = ""
    # Hosts that push to a postgresql:// source (docs/fleet.md): a finished day one of them has
    # not pushed waits, up to source_deadline. Attached to those sources when the object is
    # made (source_syntax.FleetSource), so that whoever reads the sources sees them.
    expected_hosts: tuple[str, ...] = ()
    # The first week: "mailto:ADDR" or "dir:PATH" gets every report instead of the published
    # rua (deliver.redirect); "" = off.
    redirect: str = ""
    mail: MailConfig = field(default_factory=MailConfig)
    https: HttpsSettings = field(default_factory=HttpsSettings)

    def __post_init__(self) -> None:
        """Attach ``expected_hosts`` to the ``postgresql://`` sources (frozen: set directly)."""
        object.__setattr__(self, "sources", with_expected_hosts(self.sources, self.expected_hosts))

    def missing_identity(self) -> list[str]:
        """What must be set before anything may be sent (empty when complete)."""
        missing = []
        if not self.organization_name:
            missing.append("reporter.organization_name")
        if not self.contact_info:
            missing.append("reporter.contact_info")
        if not self.mail.from_addr:
            missing.append("reporter.mail.from")
        if not self.mail.dkim and self.mail.sign_by != "relay":
            missing.append('[[reporter.mail.dkim]] (at least one key, or sign_by = "relay")')
        return missing


@dataclass(frozen=True)
class DnsSettings:
    """The ``[dns]`` table: nameservers (empty: the system's), their port, a per-lookup timeout."""

    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout: float = 5.0


@dataclass(frozen=True)
class PushConfig:
    """``[push]``: copying this MTA host's collected days into the fleet's PostgreSQL
    (``tlsrpt-reporter push``, docs/fleet.md)."""

    # A postgresql:// URL or a libpq conninfo, never with a password; "" = not set up.
    database: str = ""
    # The name this host's rows carry; "" = the machine's host name (socket.gethostname()).
    host: str = ""
    # Finished days pushed again each time (besides today), so a push that failed is made up.
    days: int = 3


@dataclass(frozen=True)
class Config:
    """The whole file; ``source`` is the file read, or None when defaults were used."""

    collectd: CollectdConfig = field(default_factory=CollectdConfig)
    reporter: ReporterConfig = field(default_factory=ReporterConfig)
    dns: DnsSettings = field(default_factory=DnsSettings)
    push: PushConfig = field(default_factory=PushConfig)
    source: Path | None = None
