"""The reporter's clock arithmetic, pure: when a day is finished, when each report is sent, how
long to wait after a failure (RFC 8460 §4.1, §5.5). No I/O, no clock: callers pass ``now``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
from collections.abc import Callable, Sequence

_BACKOFF_FIRST = 60.0
_BACKOFF_MAX = 4 * 3600.0


# --- pure decisions ----------------------------------------------------------------------


def send_times(count: int, start: float, spread: float, rng: random.Random) -> list[float]:
    """One send time per report in [start, start + spread), drawn so that load is flat:
    the window is cut into ``count`` equal slots and each report gets a random moment in its
    own slot, in a random order (RFC 8460 §4.1: not everybody at 00:00)."""
    if count == 0:
        return []
    slot = spread / count
    times = [start + (i + rng.random()) * slot for i in range(count)]
    rng.shuffle(times)
    return times


def backoff(attempts: int, rng: random.Random) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: exponential with jitter
    (RFC 8460 §5.5), so retries of many reports do not synchronise."""
    base = min(_BACKOFF_FIRST * 2.0 ** max(0, attempts - 1), _BACKOFF_MAX)
    return base * rng.uniform(0.75, 1.25)


def day_end(day: str) -> float:
    """The Unix time of the midnight that ends ``day``."""
    start = calendar.timegm(dt.date.fromisoformat(day).timetuple())
    return start + 86400.0


def ready_at(day: str, grace: float) -> float:
    """When ``day`` has finished: its UTC end plus ``grace`` for late data (RFC 8460 §4.1)."""
    return day_end(day) + grace


def due_days(
    days: Sequence[str], built: Callable[[str], bool], now: float, grace: float
) -> list[str]:
    """Days that ended at least ``grace`` seconds ago and were not built yet."""
    return [d for d in days if ready_at(d, grace) <= now and not built(d)]
