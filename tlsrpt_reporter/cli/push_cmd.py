"""``tlsrpt-reporter push``: copy this MTA host's collected days into the fleet's PostgreSQL
(docs/fleet.md). The work is ``store.fleet_push``'s; this reads ``[collectd]`` and ``[push]``,
chooses the host name and the window, and says what was done, one line per day.

Exit codes as everywhere: 0 pushed, 1 PostgreSQL unreachable or refusing (one line naming the
server and libpq's error; nothing local changed, the next run pushes again), 2 configuration.
"""

from __future__ import annotations

import asyncio
import socket
import time

from tlsrpt_reporter.config import fleet_values
from tlsrpt_reporter.config.load import load_push
from tlsrpt_reporter.errors import ConfigError
from tlsrpt_reporter.store import fleet_push, pg_connect

EXIT_OK = 0


def command(config_path: str | None, days: int | None, host: str | None) -> int:
    """Push today and the last ``days`` days (default ``push.days``) as ``host`` (default
    ``push.host``, else the machine's host name)."""
    collectd, push = load_push(config_path)
    if not push.database:
        raise ConfigError("push.database is not set: name the fleet's PostgreSQL there, a "
                          "postgresql:// URL or a libpq conninfo (docs/fleet.md)")  # fmt: skip
    name = fleet_values.host("the host name (--host, push.host or the machine's)",
                             host or push.host or socket.gethostname())  # fmt: skip
    lookback = push.days if days is None else days
    if lookback >= collectd.retention_days:
        raise ConfigError(f"--days {lookback} must be less than collectd.retention_days "
                          f"({collectd.retention_days})")  # fmt: skip
    pg_connect.require()
    done = asyncio.run(
        fleet_push.push(
            push.database,
            name,
            collectd.db,
            days=lookback,
            retention_days=collectd.retention_days,
            now=time.time(),
        )
    )
    print(f"pushed {collectd.db} as host {name} to {pg_connect.describe(push.database)}")
    for day in done:
        rows = f"{day.rows} rows" if day.outcome == "written" else ""
        state = "complete" if day.complete else "partial (the day had not ended)"
        print(f"  {day.day}  {day.outcome:9}  {rows:>12}  {state}")
    return EXIT_OK
