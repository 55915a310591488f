"""Composition of the RFC 8460 §5.3 report mail: values in, RFC 5322 message bytes out.

Pure code: no clock, no randomness, no I/O. The caller passes the date, the Message-ID and the
human-readable text; the same inputs always give the same bytes, so a dry run (`build`) and the
real send produce identical messages. Signing lives in ``dkim``, transport in ``smtp``.

The message is written by hand rather than through :mod:`email`: its structure is fixed, and the
stdlib generator folds long header lines and may switch ``filename=`` to RFC 2231 continuations,
both of which some report consumers parse badly. Every header value that comes from data is
validated here, so no value can end a header line early (header injection).
"""

from __future__ import annotations

import base64
import hashlib
import quopri
import re
import urllib.parse
from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime

from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import DeliveryError

__all__ = [
    "MEDIA_TYPE",
    "MailCompositionError",
    "check_address",
    "check_domain",
    "check_msg_id",
    "compose",
    "redirected_subject",
    "subject",
]

#: RFC 8460 §5.3 / §6.4: the media type of a gzip-compressed report.
MEDIA_TYPE = "application/tlsrpt+gzip"

# RFC 5322 §3.2.3 atext; a dot-atom is atext runs joined by single dots.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
# RFC 8460 §5.1 file names are built from A-labels, "!" and digits; this is a strict superset
# that still cannot break out of a quoted MIME parameter.
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!._+-]*\.json\.gz")
_MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1
_MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3 path limit minus the angle brackets
_MAX_ID = 250
_MAX_LINE = 998  # RFC 5322 §2.1.1: a line MUST NOT exceed 998 characters
_FOLD_AT = 78  # RFC 5322 §2.1.1: a line SHOULD NOT exceed 78 characters
# A redirected mail's Subject names at most this many destinations, each cut to this length.
_MAX_ORIGINS = 10
_MAX_ORIGIN = 200
_CRLF = b"\r\n"
# ASCII control characters (CR and LF among them) and DEL: never inside a header line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MailCompositionError(DeliveryError):
    """A value cannot be put into the report mail (it would corrupt or inject headers).

    Permanent: the same values fail the same way on every retry.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def check_domain(value: str, what: str) -> str:
    """Return ``value`` if it is a lower-case A-label domain without trailing dot, else raise.

    RFC 8460 §5.3: TLS-Report-Domain and TLS-Report-Submitter carry the same spelling as the
    report's JSON, so only the canonical form is accepted, never silently rewritten.
    """
    try:
        canonical = normalize_domain(value)
    except ValueError as exc:
        raise MailCompositionError(f"{what} {value!r} is not a domain name: {exc}") from None
    if canonical != value:
        raise MailCompositionError(
            f"{what} {value!r} is not in canonical form; pass {canonical!r} (lower-case A-label, "
            "no trailing dot)"
        )
    return value


def check_address(value: str, what: str = "address") -> str:
    """Return ``value`` if it is a plain ASCII addr-spec ``local@domain``, else raise.

    Only a dot-atom local part is accepted (no quoted strings, no display names, no comments):
    that covers every real report address and leaves nothing a header or SMTP command could be
    split on.
    """
    local, at, domain = value.rpartition("@")
    if not at or not _DOT_ATOM.fullmatch(local):
        raise MailCompositionError(
            f"{what} {value!r} is not an addr-spec like name@example.com (RFC 5322 §3.4.1)"
        )
    if len(local) > _MAX_LOCAL_PART or len(value) > _MAX_ADDRESS:
        raise MailCompositionError(f"{what} {value[:80]!r}... is longer than RFC 5321 allows")
    try:
        normalize_domain(domain)
    except ValueError as exc:
        raise MailCompositionError(f"{what} {value!r} has an invalid domain: {exc}") from None
    if not domain.isascii() or domain.endswith("."):
        raise MailCompositionError(
            f"{what} {value!r}: write the domain as an A-label without trailing dot"
        )
    return value


def check_msg_id(value: str, what: str) -> str:
    """Return ``value`` if it is an RFC 5322 msg-id without angle brackets (``left@right``).

    RFC 8460 §5.3: the Report-ID in the Subject is a msg-id; its left side is a dot-atom, so it
    cannot hold ``:`` or spaces, which several receivers split the Subject on.
    """
    left, at, right = value.partition("@")
    if not at or not _DOT_ATOM.fullmatch(left) or not _DOT_ATOM.fullmatch(right):
        raise MailCompositionError(
            f"{what} {value!r} is not a msg-id like 'unique.part@example.net' (both sides "
            "dot-atoms, RFC 5322 §3.6.4), given without angle brackets"
        )
    if len(value) > _MAX_ID:
        raise MailCompositionError(f"{what} is longer than {_MAX_ID} characters")
    return value


def subject(report_domain: str, submitter: str, report_id: str) -> str:
    """The RFC 8460 §5.3 Subject, from already validated values."""
    return f"Report Domain: {report_domain} Submitter: {submitter} Report-ID: <{report_id}>"


def compose(
    *,
    report_domain: str,
    submitter: str,
    report_id: str,
    from_addr: str,
    to_addrs: Sequence[str],
    gzip_body: bytes,
    filename: str,
    summary_text: str,
    date: datetime,
    message_id: str,
    redirected_from: Sequence[str] = (),
) -> bytes:
    """Return the report mail as RFC 5322 bytes with CRLF line ends, ready to DKIM-sign.

    ``report_id`` and ``message_id`` are msg-ids without angle brackets; ``date`` must carry a
    time zone; ``summary_text`` is the human-readable part, sent as UTF-8. ``redirected_from``
    (``reporter.redirect``): the destinations the report would have gone to, named in front of
    the Subject (:func:`redirected_subject`). Raises :class:`MailCompositionError` naming the
    offending value when any value is unusable.
    """
    check_domain(report_domain, "report domain")
    check_domain(submitter, "submitter")
    check_msg_id(report_id, "Report-ID")
    check_msg_id(message_id, "Message-ID")
    check_address(from_addr, "From address")
    if not to_addrs:
        raise MailCompositionError("no recipient address: the report needs at least one To")
    for addr in to_addrs:
        check_address(addr, "recipient address")
    if not _FILENAME.fullmatch(filename):
        raise MailCompositionError(
            f"attachment file name {filename!r} must be letters, digits and '!._+-' ending in "
            "'.json.gz' (RFC 8460 §5.1)"
        )
    if date.tzinfo is None or date.utcoffset() is None:
        raise MailCompositionError(f"date {date.isoformat()} has no time zone; pass an aware one")
    if not gzip_body.startswith(b"\x1f\x8b"):
        raise MailCompositionError("gzip_body does not start with the gzip magic bytes")

    # A boundary starting with "=_" can never occur inside base64 or quoted-printable text, and
    # deriving it from the content keeps the output reproducible.
    digest = hashlib.sha256(report_id.encode() + b"\0" + gzip_body).hexdigest()
    boundary = f"=_tlsrpt_{digest[:32]}"

    plain_subject = subject(report_domain, submitter, report_id)
    headers: list[tuple[str, str | tuple[str, ...]]] = [
        ("From", from_addr),
        ("To", ", ".join(to_addrs)),
        # RFC 8460 §5.3: exactly this grammar, never folded inside, so naive parsers see it on
        # one line (a redirected mail's prefix comes on lines before it).
        ("Subject", redirected_subject(redirected_from, plain_subject)),
        ("Date", format_datetime(date)),
        ("Message-ID", f"<{message_id}>"),
        ("MIME-Version", "1.0"),
        # RFC 8460 §5.3: multipart/report (RFC 6522) with report-type "tlsrpt".
        ("Content-Type", ('multipart/report; report-type="tlsrpt";', f'boundary="{boundary}"')),
        ("TLS-Report-Domain", report_domain),  # RFC 8460 §5.3
        ("TLS-Report-Submitter", submitter),  # RFC 8460 §5.3
        # RFC 3834 §5: machine-generated, so auto-responders stay quiet.
        ("Auto-Submitted", "auto-generated"),
        # RFC 8689 §4: the report must not be held back by MTA-STS/DANE failures
        # (RFC 8460 §5.3 "MUST deliver reports despite any TLS-related failures").
        ("TLS-Required", "No"),
    ]
    # The Subject folds at a space, which unfolding keeps (RFC 5322 §2.2.3): it reads as typed.
    out = [_header_line(name, value, " " if name == "Subject" else "\t") for name, value in headers]
    out.append(b"")
    out.append(b"This is a multipart message in MIME format (an SMTP TLS report, RFC 8460).")
    out.append(b"")
    out.append(f"--{boundary}".encode())
    out.append(b'Content-Type: text/plain; charset="utf-8"')
    out.append(b"Content-Transfer-Encoding: quoted-printable")
    out.append(b"")
    out.extend(_quoted_printable(summary_text))
    # The CRLF before a boundary belongs to the boundary (RFC 2046 §5.1.1): without this empty
    # line the text's last line end would be lost.
    out.append(b"")
    out.append(f"--{boundary}".encode())
    # RFC 8460 §5.3: the report itself, gzip-compressed, with its file name.
    out.append(_header_line("Content-Type", (f"{MEDIA_TYPE};", f'name="{filename}"')))
    out.append(_header_line("Content-Disposition", ("attachment;", f'filename="{filename}"')))
    out.append(b"Content-Transfer-Encoding: base64")
    out.append(b"")
    out.extend(base64.encodebytes(gzip_body).splitlines())
    out.append(f"--{boundary}--".encode())
    return _CRLF.join(out) + _CRLF


def redirected_subject(origins: Sequence[str], plain: str) -> str | tuple[str, ...]:
    """The Subject of a redirected report: ``[redirected from URI, URI] `` and then ``plain``
    (RFC 8460 §5.3's Subject, on a line of its own so that its grammar stays whole), folded at
    the spaces into lines of at most 78 characters where the URIs allow (RFC 5322 §2.1.1).

    The URIs come from DNS: control characters are dropped, other bytes outside printable
    ASCII percent-encoded, each is cut to 200 characters and at most 10 are named, so no
    record can end the header early or make it overlong (header injection). ``plain`` alone
    when ``origins`` is empty.
    """
    if not origins:
        return plain
    shown = [_printable(uri) for uri in origins[:_MAX_ORIGINS]]
    if len(origins) > _MAX_ORIGINS:
        shown.append(f"(and {len(origins) - _MAX_ORIGINS} more)")
    words = ["[redirected", "from", *(f"{uri}," for uri in shown[:-1]), f"{shown[-1]}]"]
    lines = [words[0]]
    width = _FOLD_AT - len("Subject: ")
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
            width = _FOLD_AT - 1  # a continuation line starts with the folding space
    return (*lines, plain)


def _printable(uri: str) -> str:
    kept = "".join(c for c in uri if c.isprintable())  # drops CR, LF, every control character
    text = "".join(c if "!" <= c <= "~" else urllib.parse.quote(c, safe="") for c in kept)
    return text if len(text) <= _MAX_ORIGIN else text[: _MAX_ORIGIN - 3] + "..."


def _header_line(name: str, value: str | tuple[str, ...], fold: str = "\t") -> bytes:
    """One header field; a tuple value is written folded, one element per line, each
    continuation starting with ``fold`` (a space or a tab)."""
    segments = (value,) if isinstance(value, str) else value
    # Values were validated field by field; this is the last line of defence: no segment may
    # hold CR, LF or another control character, so only our own folds separate lines.
    for segment in segments:
        if not segment.isascii() or _CONTROL.search(segment):
            raise MailCompositionError(f"{name} header value {segment!r} holds control characters")
    lines = [f"{name}: {segments[0]}", *segments[1:]]
    if any(len(line) + 1 > _MAX_LINE for line in lines):
        raise MailCompositionError(
            f"{name} header is longer than {_MAX_LINE} characters (RFC 5322 §2.1.1); "
            "use fewer or shorter values"
        )
    return f"\r\n{fold}".join(lines).encode("ascii")


def _quoted_printable(text: str) -> list[bytes]:
    # Normalise line ends first: quopri would encode a stray CR as =0D.
    normalised = "\n".join(text.splitlines()) + "\n"
    return quopri.encodestring(normalised.encode("utf-8")).splitlines()
