"""Unix times as operators read them: always UTC, the zone of RFC 8460's report days (§4.1)."""

from __future__ import annotations

import time


def day(when: float) -> str:
    """The UTC day ``when`` falls on, as ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(when))


def minute(when: float) -> str:
    """``when`` as shown in messages and pages: ``YYYY-MM-DD HH:MM UTC``."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))
