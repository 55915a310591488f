"""The rules of a delivery pass, as plain functions: where a report goes, and when to try again.

Pure: the sender (:mod:`.sender`) looks things up in DNS and the state database and hands the
answers in; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import random
import urllib.parse
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from tlsrpt_reporter.deliver.record import TlsRptRecord
from tlsrpt_reporter.schedule.timing import backoff

CAP_NOTE = "reporter.max_reports_per_destination"
HOST_CAP_KEY = "reporter.max_destinations_per_host"
# The answers whose Retry-After is honoured (RFC 9110 §10.2.3: 503 and 429, RFC 6585 §4).
RETRY_AFTER_STATUSES = frozenset((429, 503))


K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True)
class Destination:
    """One rua of a report: ``state`` is ``pending``, or ``given-up``, ``skipped`` or
    ``suppressed`` with ``note`` saying why."""

    target: str  # "mailto:addr" or the https URI
    state: str
    note: str = ""


def targets(record: TlsRptRecord) -> list[str]:
    """The record's usable rua as delivery targets, in the record's order."""
    return [f"mailto:{u.value}" if u.scheme == "mailto" else u.value for u in record.uris]


def host_of(target: str) -> str:
    """The host a delivery to ``target`` talks to, as far as the record tells: an https rua's
    host name (``reports.example``), a mailto rua's mail domain (``@example.com``, whose MX is
    only known when sending); lower case, without port. Deliveries are grouped by it."""
    if target.startswith("mailto:"):
        return "@" + target.rpartition("@")[2].lower()
    try:
        host = urllib.parse.urlsplit(target).hostname
    except ValueError:
        host = None
    # An unreadable URI fails on its own when tried; as a host of its own it shares no lane.
    return (host or target).removesuffix(".")


def destinations(
    record: TlsRptRecord,
    sent_today: Mapping[str, int],
    cap: int,
    per_host: int | None = None,
    suppressed: Mapping[str, str] | None = None,
) -> list[Destination]:
    """Every target of ``record``, once each: one that already took ``cap`` reports of the day
    is given up; beyond the first ``per_host`` pending targets on one host (:func:`host_of`)
    the rest are skipped. A target in ``suppressed`` (target -> why: a dead destination,
    ``deliver.dead``) is ``suppressed`` and takes no place on its host.

    A record can point anybody's rua anywhere (RFC 8460 §7): the per-destination cap bounds the
    fan-in one target can be made to receive from us in a day, the per-host cap how many copies
    of one report a single server can be made to take (a record listing 80 URIs on one host
    gets 2 POSTs, not 80). There is no daily cap per host: one report service receives for
    thousands of domains on one host.
    """
    found: list[Destination] = []
    on_host: dict[str, int] = {}
    for target in dict.fromkeys(targets(record)):
        if suppressed and suppressed.get(target):
            found.append(Destination(target, "suppressed", suppressed[target]))
            continue
        if sent_today.get(target, 0) >= cap:
            found.append(Destination(target, "given-up", CAP_NOTE))
            continue
        host = host_of(target)
        on_host[host] = on_host.get(host, 0) + 1
        if per_host is not None and on_host[host] > per_host:
            note = (
                f"skipped: this report already goes to {per_host} destinations on {host} "
                f"({HOST_CAP_KEY} = {per_host})"
            )
            found.append(Destination(target, "skipped", note))
        else:
            found.append(Destination(target, "pending"))
    return found


def by_host(items: Iterable[T], host: Callable[[T], K]) -> list[list[T]]:
    """``items`` grouped by ``host(item)``: the groups in the order their first item came, and
    each group in the order of ``items`` (a pass runs one host's deliveries one after another)."""
    groups: dict[K, list[T]] = {}
    for item in items:
        groups.setdefault(host(item), []).append(item)
    return list(groups.values())


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
