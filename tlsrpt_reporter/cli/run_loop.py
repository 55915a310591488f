"""The loop of ``tlsrpt-reporter run``: build the finished days and send what is due, once a
minute, until SIGTERM or SIGINT.

Stopping takes a moment, whatever the loop is doing, well inside systemd's TimeoutStopSec=:
waiting, it wakes on the signal (an event, never a sleep); in a delivery pass, the pass is
cancelled, and an attempt abandoned before the receiver's final answer is simply retried later
(it was recorded as an attempt before it started), while one whose answer arrived was recorded
as accepted that moment (``deliver.attempt.Handover``, ``store.accepted``); in a build, which
runs without the event loop, the signal raises inside it and the day's one transaction rolls
back (``store.tx``), so the day is built whole at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import Any, TypeVar

from tlsrpt_reporter import logs
from tlsrpt_reporter.cli import summary_cmd
from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.deliver.sender import Sender
from tlsrpt_reporter.errors import TlsRptError
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.store.state_db import StateDb

log = logging.getLogger("tlsrpt-reporter")

T = TypeVar("T")

EXIT_OK = 0
RUN_TICK = 60.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long a cancelled pass may take to unwind (closing its connections) before the loop
# stops without it.
_UNWIND = 5.0


class _Stopped(BaseException):
    """A stop signal arrived during a step that runs without the event loop. Not an Exception:
    no ``except Exception`` on the way may take it for a failure of the step."""


async def run(
    cfg: ReporterConfig,
    sender: Sender,
    conn: StateDb,
    self_check: Callable[[Sender, ReporterConfig], Coroutine[Any, Any, None]],
) -> int:
    """Run passes until a stop signal; ``self_check`` tries the DKIM keys first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    await until_stopped(stop, self_check(sender, cfg))
    rng = random.Random()
    if not stop.is_set():
        log.info("reporter running on %s", cfg.db)
    reported: list[str] = []
    while not stop.is_set():
        try:
            with logs.collapsed():
                with interruptible(stop):
                    built = schedule.build_due(cfg, conn, time.time(), rng)
                summary = await until_stopped(stop, sender.send_due(conn))
            if summary is None:
                log.info("stopping: deliveries under way were abandoned; those that had no "
                         "answer from their receiver yet are retried later")  # fmt: skip
                break
            if built or summary.attempted:  # the summary page changed (reporter.summary_html)
                summary_cmd.after_pass(cfg)
            # Say each problem on our side once, not once a minute; again when it changes.
            for problem in summary.problems:
                if problem not in reported:
                    log.error("%s", problem)
            if summary.problems or summary.attempted:  # an idle pass proves nothing
                reported = summary.problems
        except _Stopped:
            log.info("stopping during a build: a day not stored yet is built at the next start")
            break
        except (TlsRptError, sqlite3.Error) as exc:
            log.error("reporter pass failed, trying again in %.0f s: %s", RUN_TICK, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RUN_TICK)
    log.info("reporter stopped")
    return EXIT_OK


@contextlib.contextmanager
def interruptible(stop: asyncio.Event) -> Iterator[None]:
    """Run a synchronous step (the event loop waits meanwhile) so that a stop signal ends it at
    once: the signal sets ``stop`` and raises :class:`_Stopped` in the step, whose transaction
    rolls back. Raises :class:`_Stopped` before the step when ``stop`` is set already."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        stop.set()
        raise _Stopped

    # The event loop's own handlers, put back afterwards; the loop still hears of the signal
    # (through its wakeup file descriptor) and sets ``stop`` once more, which changes nothing.
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt)
    try:
        if stop.is_set():
            raise _Stopped
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


async def until_stopped(stop: asyncio.Event, work: Coroutine[Any, Any, T]) -> T | None:
    """``work``'s result, or None when ``stop`` is set first: then ``work`` is cancelled and
    has unwound (or had :data:`_UNWIND` seconds to) when this returns."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=_UNWIND)
    if not task.done() or task.cancelled():
        return None
    return task.result()
