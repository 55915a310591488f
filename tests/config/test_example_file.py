"""config/tlsrpt-reporter.toml is the complete, commented configuration: it loads, its values are
the defaults, and it names every key of every section (a key added to the schema without a line
here fails this test)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from support.paths import ROOT

from tlsrpt_reporter.config import load as config
from tlsrpt_reporter.config.schema import (
    CollectdConfig,
    DkimConfig,
    DnsSettings,
    HttpsSettings,
    MailConfig,
    PushConfig,
    ReporterConfig,
)

EXAMPLE = ROOT / "config" / "tlsrpt-reporter.toml"
# Each section's keys: the dataclass fields, spelled as in the file.
SECTIONS = {
    "collectd": {f.name for f in dataclasses.fields(CollectdConfig)},
    "reporter": {f.name for f in dataclasses.fields(ReporterConfig)} - {"mail", "https"},
    "reporter.mail": {f.name for f in dataclasses.fields(MailConfig)} - {"dkim", "from_addr"}
    | {"from"},
    "reporter.mail.dkim": {f.name for f in dataclasses.fields(DkimConfig)},
    "reporter.https": {f.name for f in dataclasses.fields(HttpsSettings)},
    "dns": {f.name for f in dataclasses.fields(DnsSettings)},
    "push": {f.name for f in dataclasses.fields(PushConfig)},
}
_HEADER = re.compile(r"^(?:#\s*)?\[\[?([a-z.]+)\]\]?")
_KEY = re.compile(r"^(?:#\s*)?([a-z_]+)\s*=")


def _named_keys(text: str) -> dict[str, set[str]]:
    """The keys each section names, set or shown commented out (``# key = ...``)."""
    named: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        if header := _HEADER.match(line):
            section = header.group(1)
        elif (key := _KEY.match(line)) and section:
            named.setdefault(section, set()).add(key.group(1))
    return named


def test_the_example_file_loads_with_every_value_at_its_default(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert config.load(EXAMPLE) == dataclasses.replace(config.load(empty), source=EXAMPLE)


def test_the_example_file_names_every_key_of_every_section() -> None:
    named = _named_keys(EXAMPLE.read_text())
    assert set(named) == set(SECTIONS)
    for section, keys in SECTIONS.items():
        assert keys - named[section] == set(), f"[{section}] lacks these keys"
        assert named[section] - keys == set(), f"[{section}] names keys the schema lacks"


def test_every_key_in_the_example_file_has_a_comment() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if _KEY.match(line) and not line.startswith("#"):
            above = lines[number - 1]
            # A key shares the comment of the key above it when they go together.
            assert above.startswith("#") or _KEY.match(above), f"line {number + 1}: {line}"
