"""Reading a TLS-RPT report from a file's bytes, whatever wrapping it came in.

This module owns turning the bytes of a ``.json``, ``.json.gz`` or ``.eml`` (ours or anyone's)
into the report's JSON value. The format is recognised by content, not by file name: gzip by its
magic bytes, JSON by its first character, a mail by its header lines; in a mail the report is the
``application/tlsrpt+gzip`` or ``application/tlsrpt+json`` part (RFC 8460 §5.3, §6.4), or a
generic gzip/JSON attachment named like a report. Every size is bounded: decompression stops at
``max_bytes`` (a gzip bomb costs at most that much memory).

It is pure (bytes in, a :class:`ReportFile` out); it does not judge the report (the schema does)
and must not open files or follow anything a received report names.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.errors import InputError

# A report is a few MB at most (receivers cap at about 10 MB compressed, docs/sender-rules.md §3);
# anything past this is not a report worth reading, or a bomb.
MAX_REPORT_BYTES = 50 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 64 * 1024
_BOM = b"\xef\xbb\xbf"
# RFC 5322 §2.2: a header field name is printable ASCII except ":", then ":".
_HEADER_LINE = re.compile(rb"[!-9;-~]+:")
# RFC 8460 §6.4 (tlsrpt+json) and §6.5 (tlsrpt+gzip): the report's own media types.
_REPORT_TYPES = ("application/tlsrpt+gzip", "application/tlsrpt+json")
# What other generators (and mail gateways) label a report with; accepted with a report's name.
_GENERIC_TYPES = (
    "application/gzip",
    "application/x-gzip",
    "application/json",
    "application/octet-stream",
    "text/json",
)
_REPORT_NAMES = (".json.gz", ".json", ".gz")
_MAIL_HEADERS = ("From", "Date", "Subject", "TLS-Report-Domain", "TLS-Report-Submitter")
_TOP_KEYS = ("organization-name", "date-range", "contact-info", "report-id", "policies")


class ReportFileError(InputError):
    """The bytes hold no readable TLS-RPT report; the message says what was found instead."""


@dataclass(frozen=True)
class ReportFile:
    """A report as read: the JSON value, how it was wrapped, and what was odd on the way."""

    document: Any
    form: str  # e.g. "gzip-compressed JSON in a mail attachment (application/tlsrpt+gzip)"
    json_bytes: int
    notes: tuple[str, ...] = ()  # oddities that do not make the report invalid
    problems: tuple[str, ...] = ()  # breaches of RFC 8460 §4 (I-JSON) the schema cannot see
    mail_headers: tuple[tuple[str, str], ...] = ()


def read_report(data: bytes, max_bytes: int = MAX_REPORT_BYTES) -> ReportFile:
    """The report in ``data`` (gzip, JSON or a mail message); ReportFileError when there is none."""
    if data.startswith(GZIP_MAGIC):
        raw = gunzip(data, max_bytes)
        return _report(raw, "gzip-compressed JSON", [])
    if data.lstrip(_BOM + b" \t\r\n")[:1] in (b"{", b"["):
        if len(data) > max_bytes:
            raise ReportFileError(f"the JSON is {len(data)} bytes, more than {max_bytes}")
        return _report(data, "JSON", [])
    if _looks_like_mail(data):
        try:
            return _from_mail(data, max_bytes)
        except RecursionError:  # Python's email parser recurses once per nested part
            raise ReportFileError(
                "mail message: its MIME parts are nested too deeply to be a report"
            ) from None
    raise ReportFileError(
        "not a TLS-RPT report: neither gzip (it does not start with 1f 8b), JSON (no '{') nor a "
        "mail message (no header lines)"
    )


def gunzip(data: bytes, max_bytes: int) -> bytes:
    """Decompress every gzip member of ``data``, refusing output beyond ``max_bytes``.

    Decompression goes in small steps, so a bomb is stopped after ``max_bytes``, not after it has
    filled the memory.
    """
    out = bytearray()
    rest = data
    while rest:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
        pending = rest
        try:
            while not inflater.eof:
                chunk = inflater.decompress(pending, _CHUNK)
                out += chunk
                if len(out) > max_bytes:
                    raise ReportFileError(
                        f"the gzip data decompresses to more than {max_bytes} bytes: refused "
                        "(no TLS-RPT report is that large; this looks like a gzip bomb)"
                    )
                pending = inflater.unconsumed_tail
                if not pending and not chunk:
                    raise ReportFileError("the gzip data is truncated (it ends mid-stream)")
        except zlib.error as exc:
            raise ReportFileError(f"the gzip data is corrupt: {exc}") from None
        rest = inflater.unused_data
        # Like gzip(1): zero padding after the last member (tape blocks) is not another member.
        if not rest.strip(b"\0"):
            break
        if not rest.startswith(GZIP_MAGIC):
            raise ReportFileError("the gzip data is followed by bytes that are not gzip")
    return bytes(out)


def _looks_like_mail(data: bytes) -> bool:
    lines = data[:4096].splitlines()
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]  # an mbox separator line
    return bool(lines) and _HEADER_LINE.match(lines[0]) is not None


def _from_mail(data: bytes, max_bytes: int) -> ReportFile:
    if data.startswith(b"From "):
        data = data.partition(b"\n")[2]
    message = email.message_from_bytes(data, policy=email.policy.default)
    headers = tuple(
        (name, str(message[name])) for name in _MAIL_HEADERS if message[name] is not None
    )
    found: list[tuple[int, email.message.Message, str]] = []
    seen: list[str] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        media = part.get_content_type()
        name = part.get_filename() or ""
        seen.append(media + (f" ({name})" if name else ""))
        if media in _REPORT_TYPES:
            found.append((0, part, media))
        elif media in _GENERIC_TYPES and name.lower().endswith(_REPORT_NAMES):
            found.append((1, part, media))
    if not found:
        raise ReportFileError(
            "a mail message without a TLS-RPT report: no application/tlsrpt+gzip or "
            f"application/tlsrpt+json part, nor a .json/.json.gz attachment (parts: "
            f"{', '.join(seen) or 'none'})"
        )
    found.sort(key=lambda entry: entry[0])
    _, chosen, media = found[0]
    notes = [f"the mail holds {len(found)} report attachments; this is the first"]
    notes = notes if len(found) > 1 else []
    payload = chosen.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raise ReportFileError(f"the {media} part of the mail has no readable content")
    filename = chosen.get_filename()
    where = f"in a mail attachment ({media}{', ' + filename if filename else ''})"
    if payload.startswith(GZIP_MAGIC):
        if media == "application/tlsrpt+json":
            notes.append("the part is labelled application/tlsrpt+json but holds gzip data")
        report = _report(gunzip(payload, max_bytes), f"gzip-compressed JSON {where}", notes)
    elif payload.lstrip(_BOM + b" \t\r\n")[:1] == b"{":
        if media == "application/tlsrpt+gzip":
            notes.append("the part is labelled application/tlsrpt+gzip but holds plain JSON")
        report = _report(payload, f"JSON {where}", notes)
    else:
        raise ReportFileError(f"the report attachment {where} is neither gzip nor JSON")
    return ReportFile(
        report.document, report.form, report.json_bytes, report.notes, report.problems, headers
    )


def _report(raw: bytes, form: str, notes: list[str]) -> ReportFile:
    if raw.startswith(_BOM):
        # RFC 8259 §8.1 (I-JSON, RFC 8460 §4): no byte order mark; tolerated, noted.
        notes.append("the JSON starts with a byte order mark, which JSON texts must not")
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportFileError(f"the JSON is not UTF-8 ({exc}); RFC 8460 §4 requires it") from None
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                duplicates.append(key)
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        document = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except ValueError as exc:  # json.JSONDecodeError too
        raise ReportFileError(f"{form}: not valid JSON: {exc}") from None
    except RecursionError:
        raise ReportFileError(f"{form}: the JSON is nested too deeply to be a report") from None
    if not isinstance(document, dict) or not any(key in document for key in _TOP_KEYS):
        raise ReportFileError(
            f"{form}: valid JSON but not a TLS-RPT report (an RFC 8460 §4.4 report is an object "
            f"with {', '.join(_TOP_KEYS)})"
        )
    # RFC 7493 §2.3 (I-JSON, required by RFC 8460 §4): member names are unique; readers
    # disagree on which duplicate wins.
    problems = tuple(
        f"the key {key!r} appears more than once in one object (the last one is shown)"
        for key in dict.fromkeys(duplicates)
    )
    return ReportFile(document, form, len(raw), tuple(notes), problems)
