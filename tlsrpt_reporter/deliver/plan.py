"""The rules of a delivery pass, as plain functions: where a report goes, and when to try again.

Pure: the sender (:mod:`.sender`) looks things up in DNS and the state database and hands the
answers in; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass

from tlsrpt_reporter.deliver.record import TlsRptRecord
from tlsrpt_reporter.schedule.timing import backoff

CAP_NOTE = "reporter.max_reports_per_destination"
# The answers whose Retry-After is honoured (RFC 9110 §10.2.3: 503 and 429, RFC 6585 §4).
RETRY_AFTER_STATUSES = frozenset((429, 503))


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
    attempts: int,
    first_attempt: float | None,
    now: float,
    retry_for: float,
    rng: random.Random,
    *,
    retry_at: float | None = None,
) -> Retry:
    """Retry with exponential backoff until ``retry_for`` seconds after the first attempt
    (RFC 8460 §5.5), then give up; a receiver's ``retry_at`` (:func:`retry_after`) inside
    that window sets the next attempt instead (:func:`next_attempt`)."""
    first = first_attempt or now
    if now - first >= retry_for:
        return Retry(True, attempts, first, now)
    attempts += 1
    later = next_attempt(now + backoff(attempts, rng), retry_at, now, first, retry_for)
    return Retry(False, attempts, first, later)


def next_attempt(
    backoff_at: float, retry_at: float | None, now: float, first_attempt: float, retry_for: float
) -> float:
    """When to try again after a failure: at the receiver's ``retry_at`` (its Retry-After) when
    that falls inside the retry window, ``retry_for`` seconds from the first attempt (RFC 8460
    §5.5), and never before ``now``; otherwise at ``backoff_at``, as the backoff says."""
    if retry_at is not None and retry_at <= first_attempt + retry_for:
        return max(retry_at, now)
    return backoff_at


def retry_after(status: int | None, header: str, now: float) -> float | None:
    """The Unix time a receiver's ``Retry-After`` asks for, read at ``now``: delay-seconds or an
    HTTP-date (RFC 9110 §10.2.3). None unless the answer was 429 or 503
    (:data:`RETRY_AFTER_STATUSES`) and the value can be read."""
    text = header.strip()
    if status not in RETRY_AFTER_STATUSES or not text:
        return None
    if text.isascii() and text.isdigit():
        # More than 12 digits is past any retry window: as good as no answer.
        return now + int(text) if len(text) <= 12 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, with the source's zone unknown (RFC 5322 §3.3)
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def destination_message_id(stem: str, destination: str) -> str:
    """The Message-ID (without angle brackets) of the mail of a report to ``destination``:
    the report's stem (``schedule.build.message_id``) with a tag of the destination, so each
    destination gets its own and every retry to it the same one (RFC 5322 §3.6.4)."""
    left, _, right = stem.partition("@")
    tag = hashlib.blake2b(destination.encode(), digest_size=5).hexdigest()
    return f"{left}.{tag}@{right}"
