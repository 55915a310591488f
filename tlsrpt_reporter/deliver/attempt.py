"""The two guards around one delivery attempt: its total deadline, and the record of the
receiver's final answer the moment that answer arrives.

A receiver that accepts the connection and then trickles bytes defeats every per-step timeout
(each byte comes in time); :func:`within` bounds the whole attempt instead: lookups, connect,
TLS, transfer and the wait for the answer. :class:`Handover` is what the transports call when
the server's final answer arrives (SMTP's reply to the end of DATA, an HTTP 2xx status line),
so the sender records the acceptance before it says QUIT or reads a body: what remains between
a crash and a duplicate is the time from that answer to the commit.

No I/O of its own; what the record is (a database write) is the caller's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tlsrpt_reporter.errors import DeliveryError

T = TypeVar("T")

DEADLINE_KEY = "reporter.attempt_deadline"


class AttemptDeadline(DeliveryError):
    """An attempt got no final answer within ``reporter.attempt_deadline``; retryable.

    ``server`` names what was waited for ("relay host:port", "the MX hosts of example.com",
    "POST https://..."), ``seconds`` the deadline.
    """

    def __init__(self, server: str, seconds: float) -> None:
        super().__init__(
            f"{server}: no final answer within {seconds:g}s ({DEADLINE_KEY}); the attempt was "
            f"stopped and is retried later (raise {DEADLINE_KEY} if this receiver is only slow)",
            permanent=False,
        )
        self.server = server
        self.seconds = seconds


async def within(seconds: float, server: str, work: Awaitable[T]) -> T:
    """``await work``, stopped after ``seconds`` in all: :class:`AttemptDeadline` then. A
    TimeoutError of ``work``'s own passes through as it is."""
    timer = asyncio.timeout(seconds)
    try:
        async with timer:
            return await work
    except TimeoutError as exc:
        if timer.expired():
            raise AttemptDeadline(server, seconds) from exc
        raise


class Handover:
    """Called by a transport with the server's final answer: records it once, through
    ``record``, and remembers it in :attr:`answer` (``''``: no server accepted yet).

    A failure after the acceptance (a lost QUIT, a body cut off, the deadline) does not undo
    it: the receiver has the report, and sending it again would only make a duplicate.
    """

    def __init__(self, record: Callable[[str], None]) -> None:
        self._record = record
        self.answer = ""

    def __call__(self, answer: str) -> None:
        """Record ``answer``, unless an acceptance was recorded already."""
        if self.answer:
            return
        self._record(answer)
        self.answer = answer
