"""Timestamps of MTA log lines: classic syslog (no year, no zone), ISO 8601 / RFC 3339 (as
rsyslog and ``journalctl -o short-iso`` write them) and Exim's ``YYYY-MM-DD HH:MM:SS``.

A time without a zone is read in the configured zone (default: the host's, DST included). A
classic syslog time has no year: the first line takes the year that does not put it in the
future, and the year steps forward when the month goes back (a log that crosses New Year).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tlsrpt_reporter.errors import ConfigError

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

# "Nov 30 10:00:01", "Nov  3 10:00:01.123456" (classic syslog, RFC 3164; Postfix's maillog_file)
SYSLOG_TIME = re.compile(r"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)(\.\d+)? ")
# "2026-11-30T10:00:01.123+01:00", "2026-11-30T10:00:01+0100" (journalctl), "...Z"
ISO_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)(Z|[+-]\d\d:?\d\d)? ")
# Exim: "2026-11-30 10:00:01", optionally ".123" (log_selector +millisec) and " +0100"
# (log_timezone = true).
EXIM_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)(?: ([+-]\d{4}))? ")

# A syslog time more than this far ahead of "now" belongs to the year before.
_FUTURE_SLACK = 2 * 86400


class TimeZoneError(ConfigError):
    """The configured time zone does not exist."""


def zone(name: str | None) -> ZoneInfo | None:
    """The named IANA zone, or None for the host's local time; raises TimeZoneError."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeZoneError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC"
        ) from None


def local_timestamp(fields: tuple[int, int, int, int, int, int], tz: ZoneInfo | None) -> float:
    """Unix time of a wall-clock time in ``tz`` (None: the host's zone, DST included)."""
    year, month, day, hour, minute, second = fields
    if tz is None:
        return time.mktime((year, month, day, hour, minute, second, 0, 0, -1))
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()


@dataclass
class YearGuess:
    """The year of classic syslog times, carried from line to line (and across restarts)."""

    year: int = 0
    month: int = 0

    def year_for(self, month: int, day: int, tz: ZoneInfo | None, now: float) -> int:
        """The year a ``month``/``day`` line belongs to."""
        if self.year == 0:
            today = dt.datetime.fromtimestamp(now, tz)
            year = today.year
            if local_timestamp((year, month, min(day, 28), 0, 0, 0), tz) > now + _FUTURE_SLACK:
                year -= 1
            self.year = year
        elif month < self.month:
            # RFC 3164 times have no year: a month that goes back means the log crossed New
            # Year (Dec -> Jan); a log is written in order.
            self.year += 1
        self.month = month
        return self.year

    def snapshot(self) -> dict[str, Any]:
        """State to resume with after a restart."""
        return {"year": self.year, "month": self.month}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> YearGuess:
        """The inverse of :meth:`snapshot`."""
        return cls(year=int(data.get("year", 0)), month=int(data.get("month", 0)))


class LineClock:
    """Reads the timestamp at the start of a log line; remembers the last one it parsed, since
    consecutive lines mostly share their second."""

    def __init__(self, tz: ZoneInfo | None, years: YearGuess | None = None) -> None:
        self.tz = tz
        self.years = years or YearGuess()
        self._last_text = ""
        self._last_value = 0.0

    def parse(self, line: str) -> tuple[float, str] | None:
        """(Unix time, the rest of the line) or None when the line starts with no known time."""
        m = SYSLOG_TIME.match(line)
        if m is not None:
            text = m.group(0)
            if text != self._last_text:
                value = self._syslog(m)
                if value is None:
                    return None
                self._last_value = value
                self._last_text = text
            return self._last_value, line[m.end() :]
        m = ISO_TIME.match(line) or EXIM_TIME.match(line)
        if m is None:
            return None
        text = m.group(0)
        if text != self._last_text:
            value = self._iso(m[1], m[2])
            if value is None:
                return None
            self._last_value = value
            self._last_text = text
        return self._last_value, line[m.end() :]

    def _syslog(self, m: re.Match[str]) -> float | None:
        month = _MONTHS.get(m[1], 0)
        day = int(m[2])
        if not month or not 1 <= day <= 31:
            return None
        year = self.years.year_for(month, day, self.tz, time.time())
        fraction = float(m[6]) if m[6] else 0.0
        try:
            fields = (year, month, day, int(m[3]), int(m[4]), int(m[5]))
            return local_timestamp(fields, self.tz) + fraction
        except (ValueError, OverflowError):
            return None

    def _iso(self, stamp: str, offset: str | None) -> float | None:
        text = stamp.replace(" ", "T")
        if offset:
            text += "+00:00" if offset == "Z" else offset
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        if when.tzinfo is None:
            if self.tz is None:
                return time.mktime(when.timetuple()) + when.microsecond / 1e6
            when = when.replace(tzinfo=self.tz)
        return when.timestamp()
