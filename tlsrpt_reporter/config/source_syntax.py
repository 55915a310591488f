"""The syntax of a ``reporter.sources`` entry: a collector database path, ``cmd:`` and a
command whose standard output is a day's ``export`` lines, or a ``postgresql://`` URL of the
fleet's database (docs/fleet.md), which carries the hosts expected to push to it.

A command runs without a shell: its text is split the way a shell would split it, and
``{day}`` is replaced in each word afterwards, so nothing in the data can change what runs.
Reading the sources is :mod:`tlsrpt_reporter.report.sources`'s job; this is only the syntax,
which the configuration checks when it is loaded.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from tlsrpt_reporter.errors import ConfigError

CMD_PREFIX = "cmd:"
# libpq takes both spellings of the URL scheme.
POSTGRESQL_PREFIXES = ("postgresql://", "postgres://")


def is_command(source: str) -> bool:
    """True for a ``cmd:`` source."""
    return source.startswith(CMD_PREFIX)


def command_words(source: str, day: str) -> list[str]:
    """The argv of a ``cmd:`` source for ``day``; ConfigError when it cannot be split."""
    try:
        words = shlex.split(source[len(CMD_PREFIX) :])
    except ValueError as exc:
        raise ConfigError(f"{source}: cannot split the command ({exc})") from None
    if not words:
        raise ConfigError(f"{source}: empty command")
    return [w.replace("{day}", day) for w in words]


def is_postgresql(source: str) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) source: the fleet's database."""
    return source.startswith(POSTGRESQL_PREFIXES)


class FleetSource(str):
    """A ``postgresql://`` entry of ``reporter.sources`` with ``reporter.expected_hosts``
    attached: still the string it was (every reader of the sources takes it as before), and
    the fleet source learns from it which hosts must have pushed a day."""

    expected_hosts: tuple[str, ...]

    def __new__(cls, url: str, expected_hosts: Iterable[str] = ()) -> FleetSource:
        """``url`` with the hosts that must push to it."""
        entry = super().__new__(cls, url)
        entry.expected_hosts = tuple(expected_hosts)
        return entry


def with_expected_hosts(sources: Iterable[str], hosts: Iterable[str]) -> tuple[str, ...]:
    """``sources`` with ``hosts`` attached to each ``postgresql://`` entry."""
    hosts = tuple(hosts)
    return tuple(FleetSource(s, hosts) if is_postgresql(s) else s for s in sources)
