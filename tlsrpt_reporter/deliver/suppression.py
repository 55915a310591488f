"""Keeping a pass's reports away from dead destinations, and counting each day's outcomes.

The sender makes one :class:`Tracker` per pass. It releases the suppressions that ended, counts
every attempt that reached a verdict (``store.suppressed``: accepted, or failed at the
destination's side as :func:`.dead.at_destination` judges), and when a destination is about to
be used (a report's destinations resolved, a due delivery picked up) it checks the rule
(:func:`.dead.is_dead`) on the finished days and suppresses it: such a delivery is recorded as
``suppressed`` with the reason and the end date, never attempted, and not counted as a failure.

Suppression is per exact destination URI: the record is read again for every report (RFC 8460
§3, nothing is kept from one day's lookup to the next), so a changed ``rua`` is a new
destination and is tried at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tlsrpt_reporter import utc
from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.deliver import dead
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store import suppressed as store
from tlsrpt_reporter.store.state_db import StateDb

log = logging.getLogger("tlsrpt-reporter")


class Tracker:
    """The dead destinations of one pass over ``conn`` (``conn`` None, or
    ``reporter.dead_after_days`` 0: an idle tracker that suppresses nothing and counts
    nothing)."""

    def __init__(
        self, conn: StateDb | None, cfg: ReporterConfig, clock: Callable[[], float]
    ) -> None:
        # dead_after_days = 0 turns it all off, suppressions already made included.
        self.conn = conn if cfg.dead_after_days > 0 else None
        self.cfg = cfg
        self.clock = clock
        self._notes: dict[str, str] = {}  # destination -> the detail of its deliveries ('')
        if self.conn is not None:
            self._release_expired(self.conn)

    @classmethod
    def idle(cls, cfg: ReporterConfig) -> Tracker:
        """A tracker for attempts made outside a pass."""
        return cls(None, cfg, time.time)

    def _release_expired(self, conn: StateDb) -> None:
        now = self.clock()
        ended = store.expired(conn, now)
        if ended:
            store.release(conn, ended, now, self.cfg.retry_for)
            for destination in ended:
                log.info("%s is no longer suppressed: trying it again", destination)

    def note_for(self, destination: str) -> str:
        """The detail of a delivery to ``destination`` when it is suppressed now ('' when not)."""
        if self.conn is None:
            return ""
        if destination not in self._notes:
            entry = self._check(self.conn, destination)
            self._notes[destination] = _detail(entry) if entry else ""
        return self._notes[destination]

    def _check(self, conn: StateDb, destination: str) -> store.Suppressed | None:
        now = self.clock()
        entry = store.active(conn, destination, now)
        if entry is not None:
            return entry
        days = store.history(conn, destination)
        today = utc.day(now)
        if not dead.is_dead(days, today, self.cfg.dead_after_days):
            return None
        reason = next((d.last_error for d in days if d.day < today and d.last_error), "")
        entry = store.Suppressed(destination, now, now + self.cfg.suppress_for, reason,
                                 dead.failed_days(days, today))  # fmt: skip
        store.suppress(conn, entry)
        log.warning(
            "%s is suppressed until %s: every delivery to it failed on %d days in a row "
            "(%s = %d); the last error: %s. `tlsrpt-reporter unsuppress %s` releases it",
            destination, utc.minute(entry.until), entry.failed_days, dead.DEAD_AFTER_KEY,
            self.cfg.dead_after_days, reason or "-", destination,
        )  # fmt: skip
        return entry

    def hold(self, due: list[state.DeliveryRow]) -> list[state.DeliveryRow]:
        """``due`` without the deliveries to suppressed destinations, which are recorded as
        ``suppressed`` instead of being attempted."""
        if self.conn is None:
            return due
        kept = []
        for delivery in due:
            note = self.note_for(delivery.destination)
            if not note:
                kept.append(delivery)
                continue
            state.set_delivery(self.conn, delivery.report, delivery.destination,
                               state="suppressed", detail=note)  # fmt: skip
            state.refresh_report_status(self.conn, delivery.report)
        return kept

    def delivered(self, destination: str) -> None:
        """Count an attempt ``destination`` accepted: its run of failed days ends."""
        if self.conn is not None:
            store.record_outcome(self.conn, destination, utc.day(self.clock()), delivered=True,
                                 keep=self._keep)  # fmt: skip

    def failed(self, destination: str, exc: BaseException) -> None:
        """Count a failed attempt, when it failed at the destination's side."""
        if self.conn is not None and dead.at_destination(exc):
            store.record_outcome(self.conn, destination, utc.day(self.clock()), delivered=False,
                                 error=str(exc), keep=self._keep)  # fmt: skip

    @property
    def _keep(self) -> int:
        # The finished days the rule looks at, and the day still running.
        return self.cfg.dead_after_days + 1


def _detail(entry: store.Suppressed) -> str:
    text = (
        f"suppressed until {utc.minute(entry.until)}: every delivery failed at the destination on "
        f"{entry.failed_days} days in a row ({dead.DEAD_AFTER_KEY}); the last error: "
        f"{entry.reason or '-'}"
    )
    return text[:1000]
