"""The fleet's PostgreSQL as a source of the reporter (a ``postgresql://`` entry of
``reporter.sources``, docs/fleet.md): a day's lines summed across the hosts that pushed it,
and the hosts it still lacks.

A host listed in ``reporter.expected_hosts`` (attached to the source, see
``config.source_syntax.FleetSource``) that has not pushed the day after it ended, and any host
whose push of the day was made before it ended, is named in the answer (``missing``):
``sources.read_day`` lists each as a failed source, so the day waits up to
``reporter.source_deadline`` as for any source that did not answer, and is then built with what
arrived, the silent host named in the log and the day's note (``status``). A host that pushed
but is not expected is used, and logged once per process.

The reporter's own role owns the fleet tables: reading, this source creates or upgrades them
(``store.fleet_read``). Reading is synchronous for the caller (``store.pg_connect.run``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.store import fleet_read, pg_connect
from tlsrpt_reporter.wire import canon

log = logging.getLogger("tlsrpt-reporter")

# Listing the days is one small query.
LIST_TIMEOUT = 60.0
_unexpected_logged: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class FleetRead:
    """A day from the fleet: lines in canonical form, (domain, record) -> last seen, and one
    sentence per host the day still lacks."""

    lines: list[dict[str, Any]]
    records: dict[tuple[str, str], float]
    missing: list[str]


def read_day(source: str, day: str, timeout: float) -> FleetRead:
    """Read ``day`` from the fleet's database ``source``; StoreError when it cannot be read."""
    fleet = pg_connect.run(fleet_read.read_day(source, day, timeout))
    expected: tuple[str, ...] = getattr(source, "expected_hosts", ())
    missing = []
    for host in sorted({*expected, *fleet.pushed}):
        if host not in fleet.pushed:
            missing.append(f"host {host} has not pushed {day}")
        elif not fleet.pushed[host]:
            missing.append(f"host {host} has not pushed all of {day} (its last push was made "
                           "before the day ended)")  # fmt: skip
        if expected and host in fleet.pushed and host not in expected:
            _log_unexpected(source, host)
    # The same gate as every other source: values in canonical form, so equal policies merge.
    lines = [line for line in map(canon.export_line, fleet.lines) if line is not None]
    return FleetRead(lines, fleet.records, missing)


def days(source: str, timeout: float = LIST_TIMEOUT) -> list[str]:
    """Every day some host pushed data for to ``source``; StoreError when it cannot be read."""
    return pg_connect.run(fleet_read.days(source, timeout))


def _log_unexpected(source: str, host: str) -> None:
    if (source, host) in _unexpected_logged:
        return
    _unexpected_logged.add((source, host))
    log.warning("host %s pushes to %s but is not in reporter.expected_hosts: its data is "
                "used; add it to notice when it stops pushing", host, source)  # fmt: skip
