"""The rules of a delivery pass, as plain functions: where a report goes, and when to try again.

Pure: the sender (:mod:`.sender`) looks things up in DNS and the state database and hands the
answers in; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from tlsrpt_reporter.deliver.record import TlsRptRecord
from tlsrpt_reporter.schedule.timing import backoff

CAP_NOTE = "reporter.max_reports_per_destination"


@dataclass(frozen=True)
class Destination:
    """One rua of a report: ``state`` is ``pending``, or ``given-up`` with ``note`` saying why."""

    target: str  # "mailto:addr" or the https URI
    state: str
    note: str = ""


def targets(record: TlsRptRecord) -> list[str]:
    """The record's usable rua as delivery targets, in the record's order."""
    return [f"mailto:{u.value}" if u.scheme == "mailto" else u.value for u in record.uris]


def destinations(
    record: TlsRptRecord, sent_today: Mapping[str, int], cap: int
) -> list[Destination]:
    """Every target of ``record``; one that already took ``cap`` reports of the day is given up.

    A record can point anybody's rua anywhere (RFC 8460 §7): the per-destination cap bounds the
    fan-in one target can be made to receive from us in a day.
    """
    return [
        Destination(target, "given-up", CAP_NOTE)
        if sent_today.get(target, 0) >= cap
        else Destination(target, "pending")
        for target in targets(record)
    ]


@dataclass(frozen=True)
class Retry:
    """What to do after a failure that may pass: give up, or try again at ``next_attempt``."""

    give_up: bool
    attempts: int
    first_attempt: float
    next_attempt: float


def after_failure(
    attempts: int, first_attempt: float | None, now: float, retry_for: float, rng: random.Random
) -> Retry:
    """Retry with exponential backoff until ``retry_for`` seconds after the first attempt
    (RFC 8460 §5.5), then give up."""
    first = first_attempt or now
    if now - first >= retry_for:
        return Retry(True, attempts, first, now)
    attempts += 1
    return Retry(False, attempts, first, now + backoff(attempts, rng))
