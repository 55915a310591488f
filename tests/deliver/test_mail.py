"""Report mail composition (RFC 8460 §5.3): structure, headers, attachment, injection safety."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import gzip
import json
import re
from typing import Any

import pytest

from tlsrpt_reporter.deliver.mail import MailCompositionError, compose

REPORT = {"organization-name": "Example Mail Ltd", "report-id": "2026.03.01.ab12@example.net"}
GZ = gzip.compress(json.dumps(REPORT).encode(), mtime=0)
SUMMARY = "Période: 2026-03-01\r\nSessions: 12 (1 failed)\n.a line starting with a dot\n\nEnd\n"
DATE = dt.datetime(2026, 3, 2, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=2)))
FILENAME = "example.net!example.com!1772323200!1772409599!ab12.json.gz"

# RFC 5322 §3.6.4 msg-id with dot-atom sides (RFC 8460 §5.3 Report-ID).
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
DOT_ATOM = rf"{ATEXT}(?:\.{ATEXT})*"
SUBJECT = re.compile(
    rf"Report Domain: (?P<domain>\S+) Submitter: (?P<submitter>\S+) "
    rf"Report-ID: <(?P<id>{DOT_ATOM}@{DOT_ATOM})>"
)


def make(**overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "report_domain": "example.com",
        "submitter": "example.net",
        "report_id": "2026.03.01.ab12@example.net",
        "from_addr": "tlsrpt-noreply@example.net",
        "to_addrs": ["tls-reports@example.com"],
        "gzip_body": GZ,
        "filename": FILENAME,
        "summary_text": SUMMARY,
        "date": DATE,
        "message_id": "tlsrpt.2026.03.01.ab12.1@example.net",
    }
    args.update(overrides)
    return compose(**args)


def parse(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def test_headers_carry_the_rfc8460_fields() -> None:
    msg = parse(make())
    assert msg["From"] == "tlsrpt-noreply@example.net"
    assert msg["To"] == "tls-reports@example.com"
    assert msg["Message-ID"] == "<tlsrpt.2026.03.01.ab12.1@example.net>"
    assert email.utils.parsedate_to_datetime(msg["Date"]) == DATE
    assert msg["MIME-Version"] == "1.0"
    assert msg["TLS-Report-Domain"] == "example.com"
    assert msg["TLS-Report-Submitter"] == "example.net"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["TLS-Required"] == "No"
    for name in ("From", "To", "Subject", "Date", "Message-ID", "TLS-Report-Domain"):
        assert len(msg.get_all(name) or []) == 1, name


def test_subject_follows_the_report_id_grammar() -> None:
    raw = make()
    subject = parse(raw)["Subject"]
    assert subject == (
        "Report Domain: example.com Submitter: example.net Report-ID: <2026.03.01.ab12@example.net>"
    )
    match = SUBJECT.fullmatch(subject)
    assert match
    assert match["domain"] == "example.com"
    assert match["submitter"] == "example.net"
    assert match["id"] == "2026.03.01.ab12@example.net"
    # Written on one line: receivers that do not unfold still see the whole Subject.
    assert b"\r\nSubject: " + subject.encode() + b"\r\n" in raw


def test_structure_is_multipart_report_with_text_then_gzip() -> None:
    msg = parse(make())
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "application/tlsrpt+gzip"]
    text, attachment = parts
    assert text.get_content_charset() == "utf-8"
    # MIME text is CRLF on the wire; the parser hands it back as such.
    assert text.get_content().replace("\r\n", "\n") == SUMMARY.replace("\r\n", "\n")
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == FILENAME
    assert attachment.get_param("name") == FILENAME
    body = attachment.get_payload(decode=True)
    assert body == GZ
    assert json.loads(gzip.decompress(body)) == REPORT


def test_every_line_ends_in_crlf_and_fits_the_line_limit() -> None:
    raw = make(summary_text="x" * 3000 + "\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998  # RFC 5322 §2.1.1
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 78  # QP and base64 stay short
    assert raw.isascii()  # 7-bit: no 8BITMIME or SMTPUTF8 needed anywhere


def test_same_inputs_give_identical_bytes_and_boundaries_differ_per_report() -> None:
    assert make() == make()
    first = parse(make()).get_boundary()
    other = parse(make(report_id="2026.03.02.ab12@example.net")).get_boundary()
    assert first and other and first != other


def test_several_recipients_are_listed_in_to() -> None:
    msg = parse(make(to_addrs=["a@example.com", "b+tls@example.org"]))
    assert [a.addr_spec for a in msg["To"].addresses] == ["a@example.com", "b+tls@example.org"]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("report_domain", "example.com\r\nBcc: victim@example.org", "report domain"),
        ("report_domain", "Example.COM", "canonical"),
        ("report_domain", "example.com.", "canonical"),
        ("submitter", "example.net\nX-Injected: 1", "submitter"),
        ("report_id", "id@example.net\r\nBcc: victim@example.org", "Report-ID"),
        ("report_id", "2026-03-01T00:00:00Z@example.net", "Report-ID"),  # ':' is not atext
        ("report_id", "<id@example.net>", "Report-ID"),
        ("report_id", "no-at-sign", "Report-ID"),
        ("message_id", "m@example.net\r\nX: y", "Message-ID"),
        ("filename", FILENAME + "\r\nContent-Type: text/html", "file name"),
        ("filename", 'a".json.gz', "file name"),
        ("filename", "report.json", "file name"),
        ("from_addr", "a@example.net\r\nBcc: victim@example.org", "From address"),
        ("from_addr", "Reporter <a@example.net>", "From address"),
        ("to_addrs", ["x@example.com\r\nBcc: victim@example.org"], "recipient"),
        ("to_addrs", ["x@exa mple.com"], "recipient"),
        ("to_addrs", ["\u00e9t\u00e9@example.com"], "recipient"),
        ("to_addrs", [], "recipient"),
        ("date", dt.datetime(2026, 3, 2), "time zone"),  # naive: the point of the test
        ("gzip_body", b"{}", "gzip"),
    ],
)
def test_unsafe_values_are_refused(field: str, value: Any, expected: str) -> None:
    with pytest.raises(MailCompositionError, match=expected):
        make(**{field: value})


def test_too_many_recipients_for_one_header_line_are_refused() -> None:
    many = [f"recipient-number-{i}@example.com" for i in range(40)]
    with pytest.raises(MailCompositionError, match="998"):
        make(to_addrs=many)
