"""The checks of numeric configuration values that TOML lets through wrong: ``nan``, ``inf``,
negative durations and integers too large to mean anything (``config.load`` applies them).

Like :mod:`tlsrpt_reporter.config.values`, each check takes the key's full name and the raw TOML
value and returns the typed value or raises ConfigError naming the key; this module holds the
durations and counts only, so that each stays small.
"""

from __future__ import annotations

import math

from tlsrpt_reporter.config.values import Check
from tlsrpt_reporter.errors import ConfigError

# A year: no duration of the reporter means anything beyond it (and float() of a larger TOML
# integer would not even be finite).
MAX_SECONDS = 366 * 86400.0
# Counts of reports or details: far beyond any real use, far below what would overflow.
MAX_COUNT = 10**9


def seconds(most: float | None = None, *, positive: bool = False) -> Check[float]:
    """A finite number of seconds >= 0 (> 0 when ``positive``), at most ``most`` (a week where
    the caller says so) and never more than :data:`MAX_SECONDS`."""
    limit = MAX_SECONDS if most is None else most
    bound = "a week" if most is not None else "a year"

    def check(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number of seconds, got {value!r}")
        if value < 0:
            raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if value > limit:
            raise ConfigError(f"{name} must be at most {bound} ({limit:g}), got {value!r}")
        if positive and not value > 0:
            raise ConfigError(f"{name} must be more than 0 seconds, got {value!r}")
        return float(value)

    return check


def count(name: str, value: object) -> int:
    """A whole number from 1 to :data:`MAX_COUNT`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    if value > MAX_COUNT:
        raise ConfigError(f"{name} must be at most {MAX_COUNT}, got {value!r}")
    return value
