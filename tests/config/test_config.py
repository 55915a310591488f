"""Tests of configuration loading and checking (docs/operating.md, "Configuration reference")."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tlsrpt_reporter.cli import commands
from tlsrpt_reporter.config import check as config_check
from tlsrpt_reporter.config import load as config
from tlsrpt_reporter.config import values
from tlsrpt_reporter.config.schema import (
    CollectdConfig,
    Config,
    DkimConfig,
    DnsSettings,
    HttpsSettings,
    MailConfig,
    ReporterConfig,
)
from tlsrpt_reporter.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_default_file_means_all_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    cfg = config.load(None)
    assert cfg.source is None
    assert cfg.collectd == CollectdConfig()
    # No [reporter] sources: the collector's own database.
    assert cfg.reporter == ReporterConfig(sources=(CollectdConfig().db,))
    assert cfg.reporter.https == HttpsSettings()
    assert cfg.dns == DnsSettings()
    assert cfg == Config(reporter=ReporterConfig(sources=(CollectdConfig().db,)))


def test_existing_default_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[collectd]\nlog_level = "debug"\n')
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", path)
    cfg = config.load(None)
    assert cfg.collectd.log_level == "debug"
    assert cfg.source == path


def test_named_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        config.load(path)


def test_invalid_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[collectd\nsocket = \n")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        config.load(path)


def test_invalid_utf8_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[collectd]\nsocket_group = "gr\xfcn"\n')
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        config.load(path)


def test_directory_instead_of_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        config.load(tmp_path)


def test_unknown_section_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[colectd]\nsocket = '/run/x.sock'\n")
    with pytest.raises(ConfigError, match="colectd"):
        config.load(path)


def test_unknown_collectd_key_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[collectd]\nsocket_mod = '0660'\n")
    with pytest.raises(ConfigError, match="socket_mod"):
        config.load(path)


def test_section_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "collectd = 5\n")
    with pytest.raises(ConfigError, match="collectd"):
        config.load(path)


@pytest.mark.parametrize(
    ("key", "toml_value"),
    [
        ("socket_mode", '"999"'),
        ("socket_mode", '"rw"'),
        ("socket_mode", "true"),
        ("socket_mode", "1.5"),
        ("flush_interval", "-1"),
        ("flush_interval", '"fast"'),
        ("flush_interval", "nan"),
        ("flush_interval", "true"),
        ("retention_days", "0"),
        ("retention_days", "1.5"),
        ("retention_days", '"14"'),
        ("log_level", '"loud"'),
        ("log_level", "3"),
        ("max_datagram_size", "10"),
        ("max_pending_keys", "-5"),
        ("socket", '""'),
        ("socket", "5"),
        ("db", '""'),
    ],
)
def test_bad_collectd_value_is_an_error_naming_the_key(
    tmp_path: Path, key: str, toml_value: str
) -> None:
    path = write(tmp_path, f"[collectd]\n{key} = {toml_value}\n")
    with pytest.raises(ConfigError, match=rf"collectd\.{key}\b"):
        config.load(path)


def test_interface_example_collectd_section_parses(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[collectd]
socket = "/var/spool/postfix/run/tlsrpt/tlsrpt.sock"
socket_mode = "0660"
socket_group = "postfix"
db = "/var/lib/tlsrpt-reporter/collectd.sqlite"
flush_interval = 1.0
retention_days = 14

[reporter]
organization_name = "Example Mail Ltd"
grace = 1800

[dns]
nameservers = []
port = 53
""",
    )
    cfg = config.load(path)
    assert cfg.source == path
    assert cfg.collectd.socket == "/var/spool/postfix/run/tlsrpt/tlsrpt.sock"
    assert cfg.collectd.socket_mode == 0o660
    assert cfg.collectd.socket_group == "postfix"
    assert cfg.collectd.db == "/var/lib/tlsrpt-reporter/collectd.sqlite"
    assert cfg.collectd.flush_interval == 1.0
    assert cfg.collectd.retention_days == 14
    assert cfg.reporter.organization_name == "Example Mail Ltd"
    assert cfg.reporter.grace == 1800.0
    assert cfg.dns == DnsSettings(nameservers=(), port=53)


@pytest.mark.parametrize(
    ("toml_value", "mode"),
    [('"0660"', 0o660), ('"0666"', 0o666), ('"600"', 0o600), ('"0000"', 0), ("432", 0o660)],
)
def test_socket_mode_is_an_octal_string_or_an_integer(
    tmp_path: Path, toml_value: str, mode: int
) -> None:
    path = write(tmp_path, f"[collectd]\nsocket_mode = {toml_value}\n")
    assert config.load(path).collectd.socket_mode == mode


def test_valid_values_parse_to_their_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[collectd]\nflush_interval = 2\nretention_days = 30\nlog_level = 'WARNING'\n"
        "max_datagram_size = 1024\nmax_pending_keys = 1000\n",
    )
    cfg = config.load(path).collectd
    assert cfg.flush_interval == 2.0
    assert isinstance(cfg.flush_interval, float)
    assert cfg.retention_days == 30
    assert cfg.log_level == "warning"
    assert cfg.max_datagram_size == 1024
    assert cfg.max_pending_keys == 1000
    # Keys not given keep their defaults.
    assert cfg.socket == CollectdConfig().socket


def test_override_collectd_applies_given_values_and_ignores_none() -> None:
    base = CollectdConfig(db="/var/lib/a.sqlite", log_level="info")
    cfg = config.override_collectd(base, socket="/run/t.sock", db=None, log_level="ERROR")
    assert cfg.socket == "/run/t.sock"
    assert cfg.db == "/var/lib/a.sqlite"
    assert cfg.log_level == "error"
    assert base.socket == CollectdConfig().socket  # the original is untouched


def test_override_collectd_with_nothing_changes_nothing() -> None:
    base = CollectdConfig(retention_days=3)
    assert config.override_collectd(base, socket=None, db=None, log_level=None) == base


@pytest.mark.parametrize(
    ("key", "value"), [("log_level", "loud"), ("socket", ""), ("socket_mode", "rw")]
)
def test_override_collectd_validates_values(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        config.override_collectd(CollectdConfig(), **{key: value})


def test_parse_mode_and_parse_log_level_name_the_value() -> None:
    with pytest.raises(ConfigError, match="'0999'"):
        values.parse_mode("0999")
    with pytest.raises(ConfigError, match="'loud'"):
        values.parse_log_level("loud")
    assert values.parse_mode("0640") == 0o640
    assert values.parse_log_level("Debug") == "debug"


def test_reporter_mx_host_reports_is_a_boolean_on_by_default(tmp_path: Path) -> None:
    def reporter(text: str) -> ReporterConfig:
        return config.load(write(tmp_path, f"[reporter]\n{text}\n")).reporter

    assert reporter("").mx_host_reports is True
    assert reporter("mx_host_reports = false").mx_host_reports is False
    assert reporter("mx_host_reports = true").mx_host_reports is True
    for wrong in ('"no"', "0", "1"):
        with pytest.raises(ConfigError, match=r"reporter\.mx_host_reports must be true or false"):
            reporter(f"mx_host_reports = {wrong}")
    with pytest.raises(
        ConfigError, match=r"unknown key reporter\.mx_host_report;.*mx_host_reports"
    ):
        reporter("mx_host_report = false")


@pytest.mark.parametrize(
    ("toml_value", "group"), [('"postfix"', "postfix"), ('"101"', "101"), ("101", "101")]
)
def test_socket_group_is_a_name_or_a_numeric_gid(
    tmp_path: Path, toml_value: str, group: str
) -> None:
    path = write(tmp_path, f"[collectd]\nsocket_group = {toml_value}\n")
    assert config.load(path).collectd.socket_group == group


@pytest.mark.parametrize("toml_value", ["-1", "4294967295", '"4294967295"', "true", "[101]"])
def test_bad_socket_group_is_an_error_naming_the_key(tmp_path: Path, toml_value: str) -> None:
    path = write(tmp_path, f"[collectd]\nsocket_group = {toml_value}\n")
    with pytest.raises(ConfigError, match=r"collectd\.socket_group\b"):
        config.load(path)


def test_allowed_senders_default_to_everyone() -> None:
    assert CollectdConfig().allowed_users == ()
    assert CollectdConfig().allowed_groups == ()


@pytest.mark.parametrize("key", ["allowed_users", "allowed_groups"])
def test_allowed_senders_are_names_and_ids_with_digit_strings_as_ids(
    tmp_path: Path, key: str
) -> None:
    path = write(tmp_path, f'[collectd]\n{key} = ["postfix", 0, "101", 4294967294]\n')
    assert getattr(config.load(path).collectd, key) == ("postfix", 0, 101, 4294967294)


@pytest.mark.parametrize("key", ["allowed_users", "allowed_groups"])
@pytest.mark.parametrize(
    "toml_value",
    ['"postfix"', "0", "[-1]", "[4294967295]", '[""]', '[" "]', "[true]", "[1.5]", "[[0]]"],
)
def test_bad_allowed_senders_are_an_error_naming_the_key(
    tmp_path: Path, key: str, toml_value: str
) -> None:
    path = write(tmp_path, f"[collectd]\n{key} = {toml_value}\n")
    with pytest.raises(ConfigError, match=rf"collectd\.{key}\b") as info:
        config.load(path)
    assert "\n" not in str(info.value)


# --- every section, typed ----------------------------------------------------------------------


def test_every_section_and_table_parses_to_its_typed_values(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not read at load time\n")
    path = write(
        tmp_path,
        f"""
[collectd]
socket = "/run/tlsrpt/t.sock"
socket_mode = "0640"
socket_group = "postfix"
allowed_users = ["postfix", "0"]
allowed_groups = [101]
db = "/srv/c.sqlite"
flush_interval = 2
retention_days = 30
max_datagram_size = 65536
max_pending_keys = 5000
max_backlog_bytes = 2097152
log_level = "DEBUG"
metrics_file = "/srv/m.prom"

[reporter]
organization_name = "Example Mail Ltd"
contact_info = "tlsrpt@example.net"
sources = ["/srv/a.sqlite", "cmd:ssh mta2 tlsrpt-reporter export --day {{day}}"]
db = "/srv/r.sqlite"
grace = 60
spread = 0
retry_for = 3600
source_deadline = 7200
source_timeout = 30
max_failure_details = 5
record_source = "dns"
never_report = ["Example.ORG."]
max_reports_per_destination = 7
mx_host_reports = false

[reporter.mail]
from = "tlsrpt@example.net"
envelope_from = "bounces@example.net"
relay = "smtp.example.net:587"
relay_starttls = true
relay_username = "tlsrpt"
relay_password_file = "/etc/tlsrpt/pw"
helo_name = "mta.example.net"

[[reporter.mail.dkim]]
domain = "Example.NET"
selector = "tlsrpt"
key = "/etc/tlsrpt/tlsrpt.pem"
record = "v=DKIM1; k=rsa; s=tlsrpt; p=AAAA"

[[reporter.mail.dkim]]
domain = "example.net"
selector = "mail"
key = "/etc/tlsrpt/mail.pem"

[reporter.https]
timeout = 12
allow_private = ["10.0.0.0/8", "fd00::/8"]
verify_certificates = false
max_response_bytes = 1024
ca_file = "{ca_file}"

[dns]
nameservers = ["192.0.2.53", "2001:DB8::53"]
port = 5353
timeout = 2
""",
    )
    cfg = config.load(path)
    assert cfg.collectd == CollectdConfig(
        socket="/run/tlsrpt/t.sock",
        socket_mode=0o640,
        socket_group="postfix",
        allowed_users=("postfix", 0),
        allowed_groups=(101,),
        db="/srv/c.sqlite",
        flush_interval=2.0,
        retention_days=30,
        max_datagram_size=65536,
        max_pending_keys=5000,
        max_backlog_bytes=2097152,
        log_level="debug",
        metrics_file="/srv/m.prom",
    )
    assert cfg.reporter.mail == MailConfig(
        from_addr="tlsrpt@example.net",
        envelope_from="bounces@example.net",
        relay="smtp.example.net:587",
        relay_starttls=True,
        relay_username="tlsrpt",
        relay_password_file="/etc/tlsrpt/pw",
        helo_name="mta.example.net",
        dkim=(
            DkimConfig("example.net", "tlsrpt", "/etc/tlsrpt/tlsrpt.pem",
                       "v=DKIM1; k=rsa; s=tlsrpt; p=AAAA"),
            DkimConfig("example.net", "mail", "/etc/tlsrpt/mail.pem", ""),
        ),
    )  # fmt: skip
    assert cfg.reporter.https == HttpsSettings(
        timeout=12.0,
        allow_private=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")),
        verify_certificates=False,
        max_response_bytes=1024,
        ca_file=str(ca_file),
    )
    assert cfg.reporter == ReporterConfig(
        organization_name="Example Mail Ltd",
        contact_info="tlsrpt@example.net",
        sources=("/srv/a.sqlite", "cmd:ssh mta2 tlsrpt-reporter export --day {day}"),
        db="/srv/r.sqlite",
        grace=60.0,
        spread=0.0,
        retry_for=3600.0,
        source_deadline=7200.0,
        source_timeout=30.0,
        max_failure_details=5,
        record_source="dns",
        never_report=("example.org",),
        max_reports_per_destination=7,
        mx_host_reports=False,
        mail=cfg.reporter.mail,
        https=cfg.reporter.https,
    )
    assert cfg.dns == DnsSettings(("192.0.2.53", "2001:db8::53"), 5353, 2.0)
    for seconds in (cfg.collectd.flush_interval, cfg.reporter.grace, cfg.reporter.https.timeout,
                    cfg.dns.timeout):  # fmt: skip
        assert isinstance(seconds, float)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("as-seen", "as-seen"), ("omit-private", "omit-private"), ("9.9.9.9", "9.9.9.9"),
     ("2A00:1450:0::1", "2a00:1450::1")],
)  # fmt: skip
def test_sending_mta_ip_takes_its_two_words_or_a_global_address(
    tmp_path: Path, value: str, expected: str
) -> None:
    assert ReporterConfig().sending_mta_ip == "as-seen"
    cfg = config.load(write(tmp_path, f'[reporter]\nsending_mta_ip = "{value}"\n'))
    assert cfg.reporter.sending_mta_ip == expected


@pytest.mark.parametrize(
    "cls",
    [Config, CollectdConfig, ReporterConfig, MailConfig, DkimConfig, HttpsSettings, DnsSettings],
)
def test_the_schema_has_no_untyped_fields(cls: type) -> None:
    for field in dataclasses.fields(cls):
        assert "Any" not in str(field.type) and "dict" not in str(field.type), field


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[reporter]\ngrace = -1\n", "reporter.grace must be a number of seconds >= 0, got -1"),
        ("[reporter]\nretry_for = 700000\n", "reporter.retry_for must be at most a week"),
        ("[reporter]\nsource_timeout = 0\n", "reporter.source_timeout must be more than 0"),
        ("[reporter]\nmax_failure_details = 0\n", "reporter.max_failure_details must be a whole"),
        ("[reporter]\nrecord_source = 'txt'\n", "reporter.record_source must be one of datagram"),
        ("[reporter]\nsending_mta_ip = 'hide'\n",
         'reporter.sending_mta_ip must be "as-seen", "omit-private" or a global IP, got \'hide\''),
        ("[reporter]\nsending_mta_ip = '10.0.0.1'\n",
         "reporter.sending_mta_ip must be \"as-seen\", \"omit-private\" or a global"),
        ("[reporter]\nsending_mta_ip = 1\n", "reporter.sending_mta_ip must be \"as-seen\""),
        ("[reporter]\nnever_report = ['a..b']\n", "reporter.never_report: 'a..b' is not a domain"),
        ("[reporter]\nsources = 'a.sqlite'\n", "reporter.sources must be a list of non-empty"),
        ("[reporter]\ncontact_info = 'nobody'\n", "reporter.contact_info must be an address like"),
        ("[reporter]\ngrase = 1\n", "unknown key reporter.grase; known: attempt_deadline,"),
        ("[reporter]\nmail = 5\n", "reporter.mail must be a table"),
        ("[reporter.mail]\nrelay = 'smtp.example.net'\n",
         'reporter.mail.relay must be "host:port" or "direct", got \'smtp.example.net\''),
        ("[reporter.mail]\nfrom = 'no-at-sign'\n", "reporter.mail.from must be an address like"),
        ("[reporter.mail]\nrelay_starttls = 'yes'\n",
         "reporter.mail.relay_starttls must be true or false, got 'yes'"),
        ("[reporter.mail]\nhelo_name = \"a\\nb\"\n",
         "reporter.mail.helo_name must not contain control characters"),
        ("[reporter.mail]\nrelay_tls = true\n", "unknown key reporter.mail.relay_tls; known: "),
        ("[reporter.mail]\ndkim = 5\n", "reporter.mail.dkim must be an array of tables"),
        ("[[reporter.mail.dkim]]\ndomain = 'example.net'\nselector = 's'\n",
         "reporter.mail.dkim[0].key must be set (a non-empty string)"),
        ("[[reporter.mail.dkim]]\ndomain = 'example.net'\nselector = 's'\nkey = 'k'\nalgo = 1\n",
         "unknown key reporter.mail.dkim[0].algo"),
        ("[[reporter.mail.dkim]]\ndomain = 'a..b'\nselector = 's'\nkey = 'k'\n",
         "reporter.mail.dkim[0].domain: 'a..b' is not a domain name"),
        ("[reporter]\nhttps = 5\n", "reporter.https must be a table"),
        ("[reporter.https]\nmax_response_bytes = 0\n",
         "reporter.https.max_response_bytes: 0 is not a positive integer"),
        ("[dns]\nport = 0\n", "dns.port must be a whole number between 1 and 65535, got 0"),
        ("dns = []\n", "[dns] must be a table"),
    ],
)  # fmt: skip
def test_bad_value_in_each_section_is_an_error_naming_key_and_value(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        config.load(path)
    assert "\n" not in str(info.value)


# --- [dns] and [reporter.https] (their settings objects are the schema's) ---------------------


def test_dns_settings_defaults() -> None:
    assert config.parse({}).dns == DnsSettings(nameservers=(), port=53, timeout=5.0)
    assert config.parse({"dns": {}}).dns == DnsSettings()


def test_dns_settings_from_the_table() -> None:
    table = {"nameservers": ["192.0.2.53", "2001:DB8::53"], "port": 5353, "timeout": 2}
    settings = config.parse({"dns": table}).dns
    assert settings == DnsSettings(("192.0.2.53", "2001:db8::53"), 5353, 2.0)
    assert isinstance(settings.timeout, float)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"nameservers": "192.0.2.53"}, "dns.nameservers must be a list of IP addresses"),
        ({"nameservers": ["ns.example.com"]}, "dns.nameservers must hold IP addresses"),
        ({"nameservers": [1]}, "dns.nameservers must hold IP addresses"),
        ({"port": "53"}, "dns.port must be a whole number between 1 and 65535, got '53'"),
        ({"port": True}, "dns.port must be a whole number between 1 and 65535, got True"),
        ({"port": 0}, "dns.port must be a whole number between 1 and 65535, got 0"),
        ({"port": 65536}, "dns.port must be a whole number between 1 and 65535, got 65536"),
        ({"port": 53.0}, "dns.port must be a whole number between 1 and 65535, got 53.0"),
        ({"timeout": "5"}, "dns.timeout must be a number of seconds, got '5'"),
        ({"timeout": False}, "dns.timeout must be a number of seconds, got False"),
        ({"timeout": 0}, "dns.timeout must be more than 0 and at most 300 seconds, got 0"),
        ({"timeout": -1}, "dns.timeout must be more than 0 and at most 300 seconds, got -1"),
        ({"timeout": float("nan")}, "dns.timeout must be more than 0 and at most 300 seconds"),
        ({"timeout": 1e9}, "dns.timeout must be more than 0 and at most 300 seconds"),
        ({"resolver": "x"}, "unknown key dns.resolver; known keys: nameservers, port, timeout"),
    ],
)
def test_dns_settings_errors_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse({"dns": table})
    assert message in str(info.value)


def test_https_settings_from_the_table() -> None:
    table = {
        "timeout": 12,
        "allow_private": ["127.0.0.0/8", "fd00::/8"],
        "verify_certificates": False,
    }
    settings = config.parse({"reporter": {"https": table}}).reporter.https
    assert settings.timeout == 12.0
    assert settings.allow_private == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert settings.verify_certificates is False
    assert config.parse({"reporter": {"https": {}}}).reporter.https == HttpsSettings()
    assert config.parse({"reporter": {"https": {"ca_file": ""}}}).reporter.https.ca_file is None


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": "30"}, "timeout"),
        ({"allow_private": "127.0.0.0/8"}, "allow_private"),
        ({"allow_private": ["127.0.0.1/8"]}, "allow_private"),
        ({"allow_private": ["localhost"]}, "allow_private"),
        ({"verify_certificates": "no"}, "verify_certificates"),
        ({"max_response_bytes": -1}, "max_response_bytes"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"verify": True}, "verify"),
    ],
)
def test_https_settings_errors_name_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"reporter\.https\.{key}\b"):
        config.parse({"reporter": {"https": table}})


# --- who reads what -----------------------------------------------------------------------------


def test_the_collector_checks_only_collectd_and_needs_the_rest_to_be_tables(
    tmp_path: Path,
) -> None:
    # The reporter's sections may name files of the reporter's host only.
    path = write(
        tmp_path,
        '[collectd]\nlog_level = "error"\n[reporter]\ngrace = -1\n'
        '[reporter.https]\nca_file = "/nonexistent/ca.pem"\n[dns]\nport = 0\n',
    )
    assert config.load_collectd(path) == CollectdConfig(log_level="error")
    with pytest.raises(ConfigError, match=r"reporter\.grace"):
        config.load(path)
    with pytest.raises(ConfigError, match=r"\[dns\] must be a table"):
        config.load_collectd(write(tmp_path, "dns = 5\n", "table.toml"))
    with pytest.raises(ConfigError, match=r"unknown section \[report\]"):
        config.load_collectd(write(tmp_path, "[report]\n", "section.toml"))
    with pytest.raises(ConfigError, match=r"collectd\.retention_days must be between"):
        config.load_collectd(write(tmp_path, "[collectd]\nretention_days = 0\n", "value.toml"))


def test_collectd_check_applies_and_checks_command_line_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[collectd]\ndb = "/srv/c.sqlite"\nflush_interval = 3\n')
    cd = config_check.collectd_config(
        str(path), socket="/run/x.sock", db=None, log_level="WARNING", flush_interval=None
    )
    assert cd == CollectdConfig(
        socket="/run/x.sock", db="/srv/c.sqlite", flush_interval=3.0, log_level="warning"
    )
    assert config_check.collectd_verdict(cd) == (
        "configuration OK (socket /run/x.sock, database /srv/c.sqlite)"
    )
    with pytest.raises(ConfigError, match=r"^command line: collectd\.flush_interval"):
        config_check.collectd_config(str(path), flush_interval=-3.0)


def test_the_db_option_replaces_the_reporter_sources(tmp_path: Path) -> None:
    path = write(tmp_path, '[reporter]\nsources = ["/srv/a.sqlite", "/srv/b.sqlite"]\ngrace = 5\n')
    assert commands.load(str(path)).sources == ("/srv/a.sqlite", "/srv/b.sqlite")
    cfg = commands.load(str(path), "/srv/only.sqlite")
    assert cfg.sources == ("/srv/only.sqlite",)
    assert cfg.grace == 5.0


# --- check-config -------------------------------------------------------------------------------


def _writable_collectd(tmp_path: Path) -> str:
    return (f'[collectd]\nsocket = "{tmp_path}/s.sock"\ndb = "{tmp_path}/c.sqlite"\n'
            'socket_group = "0"\n')  # fmt: skip


def _failing_check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The findings about ``path`` as lines, once check-config has printed exactly these and
    failed with the usage status."""
    lines = [str(f) for f in config_check.check_config(str(path))]
    assert commands.cmd_check_config(str(path)) == commands.EXIT_USAGE
    assert capsys.readouterr().out.splitlines() == lines
    return lines


def test_check_config_without_an_identity_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, _writable_collectd(tmp_path))
    assert _failing_check_config(path, capsys) == [
        f"ok       configuration read from {path}",
        f"ok       collecting: socket directory {tmp_path} exists",
        f"ok       collecting: database directory {tmp_path} exists",
        "ok       collecting: socket group gid 0 (taken as it is, no group entry needed), "
        "mode 0660",
        "missing  sending: reporter.organization_name is not set; reports are built but never sent",
        "missing  sending: reporter.contact_info is not set; reports are built but never sent",
        "missing  sending: reporter.mail.from is not set; reports are built but never sent",
        'missing  sending: [[reporter.mail.dkim]] (at least one key, or sign_by = "relay") is not '
        "set; reports are built but never sent",
        f"warning  source {tmp_path}/c.sqlite does not exist yet (the collector creates it)",
        "ok       [dns] settings",
        "ok       [reporter.https] settings",
    ]


def test_check_config_reports_bad_dns_and_https_tables_among_the_other_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _writable_collectd(tmp_path) + "[reporter.https]\ntimeout = 0\n[dns]\nport = 0\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"dns\.port"):
        config.load(path)  # strict everywhere else
    deferred: dict[str, ConfigError] = {}
    cfg = config.load(path, deferred=deferred)
    assert (cfg.dns, cfg.reporter.https) == (DnsSettings(), HttpsSettings())
    assert sorted(deferred) == ["dns", "reporter.https"]
    lines = _failing_check_config(path, capsys)
    assert lines[0] == f"ok       configuration read from {path}"
    assert lines[-2:] == [
        "error    dns.port must be a whole number between 1 and 65535, got 0",
        "error    reporter.https.timeout: 0 must be a positive number of seconds",
    ]


def test_check_config_stops_at_a_file_it_cannot_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[reporter]\ngrace = -1\n")
    findings = config_check.check_config(str(path))
    assert [(f.level, f.problem) for f in findings] == [("error", True)]
    assert "reporter.grace" in findings[0].text
    assert commands.cmd_check_config(str(path)) == commands.EXIT_USAGE
    assert capsys.readouterr().out.startswith("error    ")


def test_check_config_names_missing_and_unwritable_collector_directories(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    text = (f'[collectd]\nsocket = "{tmp_path}/nope/s.sock"\ndb = "{locked}/c.sqlite"\n'
            f'metrics_file = "{tmp_path}/m.prom"\n')  # fmt: skip
    found = config_check.collecting(config.load(write(tmp_path, text)).collectd)
    missing = tmp_path / "nope"
    assert (found[0].level, found[0].text) == (
        "error",
        f"collecting: socket directory {missing} does not exist: create it",
    )
    # root writes anywhere: only an ordinary user sees the warning.
    assert found[1].level == ("ok" if os.geteuid() == 0 else "warning")
    assert found[2].text == f"collecting: metrics_file directory {tmp_path} exists"
