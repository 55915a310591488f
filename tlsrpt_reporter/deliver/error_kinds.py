"""A delivery failure's kind: one word out of a small fixed set, for metrics and alerts.

Pure code. The sender stores the kind next to the error text when an attempt fails
(``delivery.error_kind``, see ``state``), classified from the exception itself: its HTTP
status or SMTP reply, the SMTP stage, and the chain of causes (an ``ssl.SSLError`` somewhere
below means TLS, and so on). Rows written before that column existed have only the text;
:func:`of_text` reads the messages ``smtp`` and ``https`` write. Anything unrecognised is
``other``, never an error.
"""

from __future__ import annotations

import re
import socket
import ssl

import httpx

from tlsrpt_reporter.deliver import attempt, dkim, https, mail, smtp
from tlsrpt_reporter.deliver.resolver import DnsError

KINDS = (
    "dns",  # the destination's host, MX or address could not be looked up
    "connect",  # no TCP connection (refused, unreachable)
    "tls",  # TLS handshake or certificate not accepted
    "timeout",  # the server did not answer in time
    "smtp-4xx",  # an SMTP server's temporary refusal
    "smtp-5xx",  # an SMTP server's permanent refusal
    "http-4xx",  # an https rua answered 4xx
    "http-5xx",  # an https rua answered 5xx
    "http-other",  # an https rua answered something else that is not 2xx (3xx, 1xx)
    "refused",  # we refused: the rua is unusable, or resolves to an address not allowed
    "local",  # our side: the mail could not be composed or signed, a relay setting is wrong
    "other",
)

# A reply code: three digits on their own, as in "451 4.3.0 try later" or "550-5.1.1".
_SMTP_CODE = re.compile(r"(?<![\d.])([45])\d\d(?:[ -]|$)")
_HTTP_STATUS = re.compile(r"\bHTTP ([1-5])\d\d\b")
_TLS_WORDS = re.compile(r"\bTLS\b|STARTTLS|[Cc]ertificate|SSL")


def of_exception(exc: BaseException) -> str:
    """The kind of a failed attempt's exception (one of :data:`KINDS`)."""
    if isinstance(exc, attempt.AttemptDeadline):
        return "timeout"
    if isinstance(exc, https.InvalidReportUrl | https.ForbiddenAddress):
        return "refused"
    if isinstance(exc, mail.MailCompositionError | dkim.DkimError):
        return "local"
    if isinstance(exc, https.HttpsDeliveryError) and exc.status is not None:
        return _http_kind(exc.status // 100)
    if isinstance(exc, smtp.SmtpDeliveryError):
        match = _SMTP_CODE.search(exc.reply)
        if match:
            return f"smtp-{match.group(1)}xx"
        if exc.stage == "STARTTLS":
            return "tls"
    causes = _causes(exc)
    # The most specific cause anywhere in the chain wins: httpx reports a certificate refusal
    # as a ConnectError whose own cause is the ssl.SSLError.
    for kind, types in _CAUSE_KINDS:
        if any(isinstance(cause, types) for cause in causes):
            return kind
    if isinstance(exc, smtp.SmtpDeliveryError) and exc.stage == "connect":
        return "connect"
    return of_text(str(exc))


_CAUSE_KINDS: tuple[tuple[str, type[BaseException] | tuple[type[BaseException], ...]], ...] = (
    ("tls", ssl.SSLError),
    ("dns", (DnsError, socket.gaierror)),
    ("timeout", (TimeoutError, httpx.TimeoutException)),
    ("connect", (ConnectionError, httpx.ConnectError)),
)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc``'s causes, nearest first (bounded: a cycle must not hang the sender)."""
    chain: list[BaseException] = []
    current = exc.__cause__ or exc.__context__
    while current is not None and len(chain) < 10 and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def of_text(text: str) -> str:
    """The kind of an error as stored text (for rows that predate the stored kind)."""
    lowered = text.lower()
    if (
        "cannot resolve" in lowered
        or "has no address" in lowered
        or "mx lookup" in lowered
        or "has no mail host" in lowered
    ):
        return "dns"
    if "cannot post a report to" in lowered or " refused: " in lowered:
        return "refused"
    http = _HTTP_STATUS.search(text)
    if http:
        return _http_kind(int(http.group(1)))
    for marker in (" answered ", " refused every recipient: "):
        if marker in text:
            reply = _SMTP_CODE.search(text.split(marker, 1)[1])
            if reply:
                return f"smtp-{reply.group(1)}xx"
    # Checked before TLS: "timed out ... connecting (TCP or TLS handshake)" is a timeout.
    if "timed out" in lowered or "no complete answer" in lowered or "no final answer" in lowered:
        return "timeout"
    # Case-sensitive: host names and URLs in the text are lower case.
    if _TLS_WORDS.search(text):
        return "tls"
    if "connect failed" in lowered or "connection refused" in lowered:
        return "connect"
    return "other"


def _http_kind(hundreds: int) -> str:
    return {4: "http-4xx", 5: "http-5xx"}.get(hundreds, "http-other")
