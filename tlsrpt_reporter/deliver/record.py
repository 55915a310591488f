"""The TLSRPT TXT record at ``_smtp._tls.<domain>``: choosing it and parsing it (RFC 8460 §3).

This module owns the record grammar and the vetting of each ``rua`` URI. It is pure: it never
queries DNS (``deliver.resolver`` does, and hands over the TXT strings), never resolves an
HTTPS host and never sends anything. Its output is the list of destinations a report may go to plus
human-readable notes about the rua entries it refused, for the log.

Deliberate readings where the RFC leaves room, so that a reader can check them in one place:

- A record counts as a TLSRPT record when it starts with ``v=TLSRPTv1`` followed by optional
  blanks and ``;``. The §3 prose says "begin with v=TLSRPTv1;" but the §3 ABNF's field delimiter
  allows blanks before the ``;``; mox reads it the same way.
- Record grammar errors (no fields, an empty field, a field that is not ``name=value``, an
  extension name or value outside the ABNF, no ``rua=`` at all) make the whole record unusable:
  :class:`RecordError`. A single unusable URI does not: it is dropped with a note, because URI
  syntax is delegated to other RFCs and one bad entry should not cost the others their report.
- Blanks right after ``rua=`` and at the very end of the record are tolerated (their meaning is
  unambiguous; strict parsers would drop such a record and its reports).
- ``mailto:`` follows RFC 6068 §2: the part before ``?`` is a comma-separated list of addresses
  (a comma inside a TLSRPT URI is written ``%2C``), so one URI may yield several destinations.
  Header fields after ``?`` are ignored, including ``to=``. Only dot-atom local parts in ASCII
  are accepted: quoted local parts would make the comma ambiguous and non-ASCII ones need
  SMTPUTF8, which the mail sender does not speak.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import InputError

VERSION = "v=TLSRPTv1"
# A record is a handful of URIs; anything this long is garbage or an attack on the parser.
MAX_RECORD_LENGTH = 4096
# RFC 8460 §7: a record can point reports anywhere; bound the fan-out of one record.
MAX_URIS = 16

_WSP = " \t"
# RFC 8460 §3: tlsrpt-version followed by field-delim (*WSP ";" *WSP); "v=" is case-sensitive.
_VERSION_DELIM = re.compile(r"v=TLSRPTv1[ \t]*;")
# RFC 8460 §3: tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
_FIELD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
# RFC 8460 §3: tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E): no "=", ";", SP or controls.
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# RFC 5322 §3.2.3: atext, and a dot-atom made of it.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
# RFC 5321 §4.5.3.1.1: longest local part.
_MAX_LOCAL_PART = 64
_SHOW = 80


class RecordError(InputError):
    """The TXT record is not a valid TLSRPT record: the domain gets no report."""


class _Unusable(Exception):
    """One rua URI cannot be used; the message says why (internal to this module)."""


@dataclass(frozen=True)
class ReportURI:
    """One usable report destination from a record's ``rua``.

    ``scheme`` is ``"mailto"`` or ``"https"``. For mailto, ``value`` is one decoded addr-spec
    (local part as written, domain as a lower-case A-label); for https it is the whole URI.
    """

    scheme: str
    value: str

    @property
    def host(self) -> str:
        """The mail domain of a mailto address, or the host of an https URI."""
        if self.scheme == "mailto":
            return self.value.rpartition("@")[2]
        return urlsplit(self.value).hostname or ""

    def __str__(self) -> str:
        return f"mailto:{self.value}" if self.scheme == "mailto" else self.value


@dataclass(frozen=True)
class TlsRptRecord:
    """A parsed record: the usable destinations, and a note for each rua entry dropped."""

    uris: tuple[ReportURI, ...]
    ignored: tuple[str, ...]


def is_tlsrpt_record(text: str) -> bool:
    """Whether a TXT string announces itself as a TLSRPT record (RFC 8460 §3).

    True for ``v=TLSRPTv1;...`` and ``v=TLSRPTv1 ;...``; false for ``v=TLSRPTv1`` alone, for
    ``v=TLSRPTv10;`` and for other capitalisations.
    """
    return _VERSION_DELIM.match(text) is not None


def select_record(txt_records: Sequence[str]) -> str | None:
    """The one TLSRPT record among the TXT records of ``_smtp._tls.<domain>``, or None.

    Each element is one TXT RDATA with its character-strings already joined. None means the
    domain does not implement TLSRPT: no record, or several.
    """
    # RFC 8460 §3: other TXT records are discarded; anything but exactly one TLSRPT record
    # means the domain does not implement TLSRPT.
    candidates = [text for text in txt_records if is_tlsrpt_record(text)]
    return candidates[0] if len(candidates) == 1 else None


def parse_record(text: str) -> TlsRptRecord:
    """Parse one TLSRPT record (the joined TXT strings) into its usable report destinations.

    Raises RecordError when the record breaks the RFC 8460 §3 grammar, has no ``rua=`` field or
    is longer than :data:`MAX_RECORD_LENGTH`. Unusable URIs do not raise: they are listed in
    ``ignored``; a record whose URIs are all unusable yields an empty ``uris``.
    """
    if len(text) > MAX_RECORD_LENGTH:
        raise RecordError(
            f"TLSRPT record is {len(text)} characters long, more than the {MAX_RECORD_LENGTH} "
            "this reporter accepts"
        )
    found: list[ReportURI] = []
    ignored: list[str] = []
    saw_rua = False
    names: list[str] = []
    for field in _fields(text):
        name, sep, value = field.partition("=")
        if not sep:
            raise RecordError(f"TLSRPT record field {_show(field)} is not name=value")
        if not _FIELD_NAME.fullmatch(name):
            raise RecordError(f"TLSRPT record field name {_show(name)} is not valid")
        names.append(name)
        if name == "rua":  # RFC 8460 §3: %s"rua=", so "RUA=" is an unknown extension
            # RFC 8460 §3: several rua fields are allowed; all their URIs count.
            saw_rua = True
            for token in _uri_tokens(value):
                try:
                    found.extend(_parse_uri(token))
                except _Unusable as exc:
                    ignored.append(f"rua {_show(token)} ignored: {exc}")
        elif not _EXT_VALUE.fullmatch(value):
            raise RecordError(
                f"TLSRPT record field {_show(field)}: an extension value must be printable "
                "ASCII without '=', ';' or spaces"
            )
        # RFC 8460 §3: extensions this reporter does not know are ignored.
    if not saw_rua:
        hint = " (field names are case-sensitive)" if "rua" in (n.lower() for n in names) else ""
        raise RecordError(f"TLSRPT record has no rua= field{hint}")
    uris = _dedupe_and_cap(found, ignored)
    return TlsRptRecord(uris=uris, ignored=tuple(ignored))


def _fields(text: str) -> list[str]:
    """The fields after the version, blanks around each stripped."""
    match = _VERSION_DELIM.match(text)
    if match is None:
        if text.rstrip(_WSP) == VERSION:
            raise RecordError("TLSRPT record has nothing after v=TLSRPTv1; it needs a rua= field")
        raise RecordError(
            f"TLSRPT record must start with 'v=TLSRPTv1;' (case-sensitive), got {_show(text)}"
        )
    parts = text[match.end() :].split(";")
    # RFC 8460 §3: one trailing field-delim is allowed.
    if not parts[-1].strip(_WSP):
        parts.pop()
    if not parts:
        raise RecordError("TLSRPT record has no field after v=TLSRPTv1; it needs a rua= field")
    fields = [part.strip(_WSP) for part in parts]
    if "" in fields:
        raise RecordError("TLSRPT record has an empty field between two ';'")
    return fields


def _uri_tokens(value: str) -> list[str]:
    # RFC 8460 §3: tlsrpt-rua = "rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri); a literal ","
    # always separates URIs because one inside a URI must be written %2C.
    tokens = [token.strip(_WSP) for token in value.split(",")]
    if "" in tokens:
        raise RecordError(f"TLSRPT record field rua={_show(value)} has an empty URI")
    return tokens


def _parse_uri(token: str) -> list[ReportURI]:
    if "!" in token:
        # RFC 8460 §3: "!" inside a URI must be percent-encoded (DMARC uses it for size limits).
        raise _Unusable("a literal '!' must be percent-encoded as %21")
    if not all("\x21" <= char <= "\x7e" for char in token):
        raise _Unusable("contains blanks, control or non-ASCII characters")
    match = _SCHEME.match(token)
    if match is None:
        raise _Unusable("is not a URI (no scheme)")
    scheme = match.group(1).lower()  # RFC 3986 §3.1: schemes are case-insensitive
    rest = token[match.end() :]
    if scheme == "mailto":
        return _mailto(rest)
    if scheme == "https":
        return [_https("https:" + rest)]
    # RFC 8460 §3: mailto and https are the only defined report URI schemes.
    raise _Unusable(f"scheme {scheme!r} is not supported (only mailto and https)")


def _mailto(rest: str) -> list[ReportURI]:
    # RFC 6068 §2: mailto:to?hfields, and there is no fragment; hfields are ignored.
    to = rest.partition("#")[0].partition("?")[0]
    if not to:
        raise _Unusable("mailto has no address")
    try:
        decoded = unquote_to_bytes(to).decode("utf-8")
    except UnicodeDecodeError:
        raise _Unusable("mailto address is not valid UTF-8 once percent-decoded") from None
    if any(unicodedata.category(char) == "Cc" for char in decoded):
        # docs/sender-rules.md §1: an encoded CR/LF/NUL is a header-injection attempt.
        raise _Unusable("mailto address contains control characters (CR, LF, NUL...)")
    # RFC 6068 §2: to = addr-spec *("," addr-spec); the comma arrives here percent-decoded.
    return [ReportURI("mailto", _addr_spec(address)) for address in decoded.split(",")]


def _addr_spec(address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise _Unusable(f"mailto address {_show(address)} is not local@domain")
    if not _DOT_ATOM.fullmatch(local):
        raise _Unusable(
            f"mailto local part {_show(local)} is not a plain ASCII dot-atom (quoted and "
            "non-ASCII local parts are not supported)"
        )
    if len(local) > _MAX_LOCAL_PART:
        raise _Unusable(f"mailto local part is longer than {_MAX_LOCAL_PART} characters")
    return f"{local}@{_mail_domain(domain)}"


def _mail_domain(domain: str) -> str:
    if domain.startswith("["):
        raise _Unusable(f"mailto domain {_show(domain)}: address literals are not accepted")
    try:
        name = normalize_domain(domain)
    except ValueError as exc:
        raise _Unusable(f"mailto domain {_show(domain)} is not valid: {exc}") from None
    labels = name.split(".")
    # A mail domain has a registered top-level label, which starts with a letter ("xn--" too);
    # this refuses single labels and IPv4 addresses in disguise.
    if len(labels) < 2 or "_" in name or not labels[-1][0].isalpha():
        raise _Unusable(f"mailto domain {_show(domain)} is not a plausible mail domain")
    return name


def _https(uri: str) -> ReportURI:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - evaluated for its ValueError on a bad port
    except ValueError as exc:
        raise _Unusable(f"is not a valid URL ({exc})") from None
    if "@" in parts.netloc:
        # Credentials in a rua would be sent to whoever the record names.
        raise _Unusable("https URI carries user information")
    host = parts.hostname
    if not host:
        raise _Unusable("https URI has no host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            normalize_domain(host)
        except ValueError as exc:
            raise _Unusable(f"https host {_show(host)} is not valid: {exc}") from None
    return ReportURI("https", uri)


def _dedupe_and_cap(found: list[ReportURI], ignored: list[str]) -> tuple[ReportURI, ...]:
    kept: list[ReportURI] = []
    over = 0
    for uri in found:
        if uri in kept:
            ignored.append(f"rua {_show(str(uri))} listed more than once: used once")
        elif len(kept) >= MAX_URIS:
            over += 1
        else:
            kept.append(uri)
    if over:
        ignored.append(f"{over} rua URI(s) beyond the first {MAX_URIS} ignored")
    return tuple(kept)


def _show(text: str) -> str:
    """``text`` quoted for a message, control characters escaped, long values shortened."""
    return repr(text if len(text) <= _SHOW else text[:_SHOW] + "...")
