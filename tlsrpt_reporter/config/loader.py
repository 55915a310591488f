"""Configuration: one TOML file (shared/INTERFACE.md), defaults for every key, strict checking.

A bad value raises ConfigError naming the key, the value and what was expected; the commands
turn that into exit code 2. Sections other than ``[collectd]`` are read by the reporter.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlsrpt_reporter.errors import ConfigError, os_fix

DEFAULT_CONFIG_PATH = Path("/etc/tlsrpt-reporter/config.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")
_SECTIONS = ("collectd", "reporter", "dns")
_MAX_ID = 2**32 - 2


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
    # PROTOCOL.md: libtlsrpt datagrams reach ~200 KB at most; anything larger is rejected.
    max_datagram_size: int = 262_144
    # Memory bounds while the database cannot be written, and while the decoder lags behind.
    max_pending_keys: int = 2_000_000
    max_backlog_bytes: int = 256 * 1024 * 1024
    log_level: str = "info"
    # Counters in Prometheus text format for node-exporter's textfile collector; "" = off.
    metrics_file: str = ""


@dataclass(frozen=True)
class Config:
    """The whole file; ``source`` is the file read, or None when defaults were used."""

    collectd: CollectdConfig = field(default_factory=CollectdConfig)
    reporter: dict[str, Any] = field(default_factory=dict)
    dns: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None


def load(path: str | Path | None) -> Config:
    """Read the configuration.

    ``None`` means the default path, whose absence means "all defaults"; a file named
    explicitly must exist.
    """
    explicit = path is not None
    file = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {file} does not exist") from None
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {os_fix(exc, file)}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    return parse(data, source=file)


def parse(data: dict[str, Any], source: Path | None = None) -> Config:
    """Validate an already-parsed TOML document."""
    where = str(source) if source else "config"
    for name in data:
        if name not in _SECTIONS:
            raise ConfigError(f"{where}: unknown section [{name}]; known: {', '.join(_SECTIONS)}")
    collectd = _collectd(_table(data, "collectd", where), where)
    return Config(
        collectd=collectd,
        reporter=_table(data, "reporter", where),
        dns=_table(data, "dns", where),
        source=source,
    )


def _table(data: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return value


def _collectd(table: dict[str, Any], where: str) -> CollectdConfig:
    known = {f.name for f in dataclasses.fields(CollectdConfig)}
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{where}: unknown key collectd.{key}; known keys: {', '.join(sorted(known))}"
            )
    values: dict[str, Any] = {}
    for key, value in table.items():
        values[key] = _check_collectd_value(key, value, where)
    return CollectdConfig(**values)


def _check_collectd_value(key: str, value: Any, where: str) -> Any:
    name = f"{where}: collectd.{key}"
    if key in ("socket", "db"):
        return _path_string(name, value)
    if key == "socket_group":
        return _socket_group(name, value)
    if key == "allowed_users":
        return _id_list(name, value, "user", "uid")
    if key == "allowed_groups":
        return _id_list(name, value, "group", "gid")
    if key == "socket_mode":
        return parse_mode(value, name)
    if key == "flush_interval":
        return _number(name, value, 0.01, 3600.0)
    if key == "retention_days":
        return _integer(name, value, 1, 3660)
    if key == "max_datagram_size":
        return _integer(name, value, 1024, 16 * 1024 * 1024)
    if key == "max_pending_keys":
        return _integer(name, value, 1000, 100_000_000)
    if key == "max_backlog_bytes":
        return _integer(name, value, 1024 * 1024, 16 * 1024**3)
    if key == "log_level":
        return parse_log_level(value, name)
    if key == "metrics_file":
        return _metrics_file(name, value)
    raise AssertionError(key)  # pragma: no cover - _collectd filtered unknown keys


def parse_mode(value: Any, name: str = "socket_mode") -> int:
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


def parse_log_level(value: Any, name: str = "log_level") -> str:
    """One of :data:`LOG_LEVELS`, case-insensitive."""
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise ConfigError(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.lower()


def _path_string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{name} must be a non-empty path, got {value!r}")
    return value


def _metrics_file(name: str, value: Any) -> str:
    if not isinstance(value, str) or "\0" in value:
        raise ConfigError(
            f'{name} must be a file path (string; "" for none), e.g. '
            f'"/var/lib/prometheus/node-exporter/tlsrpt-collectd.prom", got {value!r}'
        )
    if value.endswith("/"):
        raise ConfigError(f"{name} must name a file, not a directory, got {value!r}")
    return value


def _socket_group(name: str, value: Any) -> str:
    # Kept as a string: the collector looks a name up and takes digits as the gid itself.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(_numeric_id(name, value, value, "gid"))
    if not isinstance(value, str) or "\0" in value:
        raise ConfigError(
            f'{name} must be a group name or a numeric gid, e.g. "postfix" or 101, got {value!r}'
        )
    if _is_digits(value):
        _numeric_id(name, int(value), value, "gid")
    return value


def _id_list(name: str, value: Any, kind: str, id_name: str) -> tuple[str | int, ...]:
    """A list of names and numeric ids; digit strings become ids, names stay for the collector
    to resolve (the reporter's host may lack the MTA's users, and reads the same file)."""
    if not isinstance(value, list):
        raise ConfigError(
            f'{name} must be a list of {kind} names or numeric {id_name}s, e.g. ["postfix", 0], '
            f"got {value!r}"
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


def _is_digits(value: str) -> bool:
    # ASCII only: str.isdigit() also takes characters such as "²" that int() refuses.
    return value.isascii() and value.isdigit()


def _numeric_id(name: str, number: int, given: object, id_name: str) -> int:
    # 4294967295 is (uid_t)-1, which the kernel never gives a process.
    if not 0 <= number <= _MAX_ID:
        raise ConfigError(f"{name}: a {id_name} must be between 0 and {_MAX_ID}, got {given!r}")
    return number


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value!r}")
    return float(value)


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value!r}")
    return value


def override_collectd(cfg: CollectdConfig, **values: Any) -> CollectdConfig:
    """Apply command-line overrides (None means "not given"), checked like the file's values."""
    checked = {
        key: _check_collectd_value(key, value, "command line")
        for key, value in values.items()
        if value is not None
    }
    return dataclasses.replace(cfg, **checked)
