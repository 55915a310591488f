"""The collector's ``metrics_file``: rewritten after a flush, never waited for on the way.

The file is for node-exporter's textfile collector. The event loop, which alone changes the
counters, only copies them (``Counters.snapshot``, microseconds); a worker thread renders the
copy and writes the file, at most once per :data:`EVERY` seconds, so a slow or hung disk never
delays decoding or the next database write. A write that fails is logged once per distinct
problem (and again hourly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from tlsrpt_collectd import metrics
from tlsrpt_reporter.wire.aggregate import Aggregate

log = logging.getLogger("tlsrpt-collectd")

# The metrics file is rewritten after a flush, at most this often (seconds).
EVERY = 1.0
_REMIND_EVERY = 3600.0


class MetricsFile:
    """Publishes ``counters`` (and how many keys ``agg`` holds) to ``path``; "" turns it off."""

    def __init__(self, path: str, counters: metrics.Counters, agg: Aggregate) -> None:
        self.path = path
        self.counters = counters
        self.agg = agg
        self._writing: asyncio.Task[None] | None = None
        self._written_at = -math.inf
        self._error = ""
        self._error_at = 0.0

    def publish(self, now: float) -> None:
        """Start rewriting the file in a worker thread, unless one ran less than :data:`EVERY`
        seconds ago or is still running (newer counts then wait for the next turn)."""
        if not self.path or now - self._written_at < EVERY:
            return
        if self._writing is not None and not self._writing.done():
            return
        self._written_at = now
        snapshot = self.counters.snapshot()
        self._writing = asyncio.create_task(self._write(snapshot, len(self.agg)))

    async def write_last(self) -> None:
        """The final counts at shutdown, unless an earlier write is still hanging."""
        if not self.path:
            return
        if self._writing is not None and not self._writing.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._writing), 5.0)
            if not self._writing.done():
                return
        await self._write(self.counters.snapshot(), len(self.agg))

    async def _write(self, counters: metrics.Counters, pending_keys: int) -> None:
        try:
            await asyncio.to_thread(self._render_and_write, counters, pending_keys)
        except OSError as exc:
            # Once per distinct problem (and an hourly reminder): never fatal, never a flood.
            problem = f"{exc.strerror or exc}"
            now = time.monotonic()
            if problem != self._error or now - self._error_at >= _REMIND_EVERY:
                log.error(
                    "cannot write collectd.metrics_file %s: %s; collecting goes on, the "
                    "metrics are not updated until this is fixed",
                    self.path,
                    problem,
                )
                self._error, self._error_at = problem, now
            return
        if self._error:
            log.warning("collectd.metrics_file %s is written again", self.path)
            self._error = ""

    def _render_and_write(self, counters: metrics.Counters, pending_keys: int) -> None:
        metrics.write_atomically(self.path, metrics.text(counters, pending_keys))
