"""The syntax of a ``reporter.sources`` entry: a collector database path, or ``cmd:`` and a
command whose standard output is a day's ``export`` lines.

A command runs without a shell: its text is split the way a shell would split it, and
``{day}`` is replaced in each word afterwards, so nothing in the data can change what runs.
Reading the sources is :mod:`tlsrpt_reporter.report.sources`'s job; this is only the syntax,
which the configuration checks when it is loaded.
"""

from __future__ import annotations

import shlex

from tlsrpt_reporter.errors import ConfigError

CMD_PREFIX = "cmd:"


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
