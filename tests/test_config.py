"""Tests of configuration loading and checking (INTERFACE.md "Configuration")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tlsrpt_reporter.config import loader as config
from tlsrpt_reporter.config import reporter as reporter_config
from tlsrpt_reporter.config.loader import CollectdConfig, Config
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
    assert cfg == Config()
    assert cfg.source is None
    assert cfg.collectd == CollectdConfig()
    assert cfg.reporter == {}
    assert cfg.dns == {}


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
    assert cfg.reporter == {"organization_name": "Example Mail Ltd", "grace": 1800}
    assert cfg.dns == {"nameservers": [], "port": 53}


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
        config.parse_mode("0999")
    with pytest.raises(ConfigError, match="'loud'"):
        config.parse_log_level("loud")
    assert config.parse_mode("0640") == 0o640
    assert config.parse_log_level("Debug") == "debug"


def test_reporter_mx_host_reports_is_a_boolean_on_by_default(tmp_path: Path) -> None:
    def reporter(text: str) -> reporter_config.ReporterConfig:
        return reporter_config.from_config(config.load(write(tmp_path, f"[reporter]\n{text}\n")))

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
