"""When a destination is dead: the rule, as plain functions (docs/sender-rules.md §9).

A destination is dead when, on each of the last ``reporter.dead_after_days`` UTC days that had
attempts to it reaching a verdict, every such attempt failed at the destination's side. Days
without such attempts are skipped, not counted: a domain that sends us no traffic for a week does
not reset its rua, nor does a week our relay was down.

What counts as the destination's own failure is what we can see of it: its MX or its https
server refused (an SMTP 4xx or 5xx reply, an HTTP status that is not 2xx, a TLS failure, a
refused connection), or its host or mail domain does not exist (NXDOMAIN, a null MX, no
address). Never ours: our relay's refusals and its being down, our resolver not answering
(SERVFAIL, timeouts), timeouts of any kind (they may be our network), what we refuse to send
(``refused``, ``local``). A bounce that reaches a relay later is not seen here at all.

Pure: the sender hands the exceptions and the stored days in (``deliver.suppression``).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Sequence

from tlsrpt_reporter.deliver import error_kinds, https, smtp
from tlsrpt_reporter.deliver.resolver import DnsTemporaryError
from tlsrpt_reporter.store.suppressed import DayOutcome

DEAD_AFTER_KEY = "reporter.dead_after_days"

# RFC 3463 §3.2: X.1.1 bad destination mailbox, X.1.2 bad destination system, X.1.3 bad
# destination mailbox syntax; RFC 7505 §4.2: X.1.10 the domain accepts no mail (null MX). A relay
# that answers RCPT TO with one of these speaks for the destination.
_ADDRESS_STATUS = re.compile(r"\b[45]\.1\.(?:1|2|3|10)\b")
# Replies of an https rua's server, or of the destination's MX.
_ANSWERED = frozenset(("http-4xx", "http-5xx", "http-other", "smtp-4xx", "smtp-5xx", "tls"))


def at_destination(exc: BaseException) -> bool:
    """Whether the failed attempt that raised ``exc`` failed at the destination's side (see
    the module's docstring); False for anything on our side or not known to be theirs."""
    kind = error_kinds.of_exception(exc)
    if isinstance(exc, smtp.SmtpDeliveryError):
        if exc.server.startswith("relay "):
            # Our relay's answer is ours, unless it refuses the recipient's address itself.
            return (
                kind in ("smtp-4xx", "smtp-5xx")
                and " refused every recipient: " in str(exc)
                and _ADDRESS_STATUS.search(exc.reply) is not None
            )
        if kind in _ANSWERED:
            return True
        # An MX host without address fails as a "connect" of that host: the text tells.
        if kind == "dns" or error_kinds.of_text(str(exc)) == "dns":
            # Permanent: NXDOMAIN, a null MX, no address; a lookup that got no answer is not.
            return exc.permanent
    elif isinstance(exc, https.HttpsDeliveryError):
        if kind == "dns":
            # "has no address" (NXDOMAIN, NODATA); not "cannot resolve" (no answer).
            return not any(isinstance(c, DnsTemporaryError) for c in _chain(exc))
    else:
        return False
    if kind in _ANSWERED:
        return True
    return kind == "connect" and _refused(exc)


def _refused(exc: BaseException) -> bool:
    """A connection refused by the destination (not a network of ours that is unreachable)."""
    for cause in _chain(exc):
        if isinstance(cause, ConnectionRefusedError):
            return True
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return True
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (bounded: a cycle must not hang the sender)."""
    chain = [exc]
    current = exc.__cause__ or exc.__context__
    while current is not None and len(chain) < 12 and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def failed_days(days: Sequence[DayOutcome], today: str) -> int:
    """How many finished days (before ``today``) in a row, the latest back, had attempts that
    all failed at the destination; a day with an accepted attempt ends the run."""
    run = 0
    for outcome in sorted(days, key=lambda d: d.day, reverse=True):
        if outcome.day >= today:
            continue  # the day is not over: a later attempt may still get through
        if outcome.delivered:
            break
        if outcome.failed:
            run += 1
    return run


def is_dead(days: Sequence[DayOutcome], today: str, dead_after_days: int) -> bool:
    """Whether the destination with these ``days`` is dead (never with ``dead_after_days`` 0)."""
    return dead_after_days > 0 and failed_days(days, today) >= dead_after_days
