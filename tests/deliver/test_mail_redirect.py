"""The Subject of a redirected report (reporter.redirect): it names the destinations the report
would have gone to, folded at spaces, and nothing from DNS can inject a header."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest
from deliver.test_mail import SUBJECT, make

from tlsrpt_reporter.deliver import redirect
from tlsrpt_reporter.deliver.mail import redirected_subject
from tlsrpt_reporter.deliver.plan import Destination

PLAIN = "Report Domain: example.com Submitter: example.net Report-ID: <2026.03.01.ab12@example.net>"


def header_lines(raw: bytes, name: str) -> list[bytes]:
    """The physical lines of header ``name``: its first line and its continuations."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(head) if line.startswith(name.encode() + b": "))
    lines = [head[start]]
    for line in head[start + 1 :]:
        if line[:1] not in (b" ", b"\t"):
            break
        lines.append(line)
    return lines


def parsed_subject(raw: bytes) -> str:
    msg: Any = email.message_from_bytes(raw, policy=email.policy.default)
    return str(msg["Subject"])


def test_a_redirected_subject_names_the_destinations_before_the_rfc8460_subject() -> None:
    origins = ["mailto:tlsrpt@example.com", "https://reports.example.com/v1/tlsrpt"]
    raw = make(to_addrs=["ops@example.net"], redirected_from=origins)
    subject = parsed_subject(raw)
    assert subject == (
        "[redirected from mailto:tlsrpt@example.com, https://reports.example.com/v1/tlsrpt] "
        + PLAIN
    )
    # The RFC 8460 §5.3 part stays whole on a line of its own: a parser that matches it finds it.
    assert SUBJECT.search(subject)
    assert header_lines(raw, "Subject")[-1] == f" {PLAIN}".encode()


def test_an_unredirected_subject_is_one_line_as_before() -> None:
    raw = make()
    assert header_lines(raw, "Subject") == [f"Subject: {PLAIN}".encode()]


def test_many_long_destinations_fold_at_spaces_within_78_characters() -> None:
    origins = [f"https://collector-{n}.reports.example.com/tlsrpt/v1/upload" for n in range(8)]
    raw = make(redirected_from=origins)
    lines = header_lines(raw, "Subject")
    assert len(lines) > 3
    assert all(len(line) <= 78 for line in lines[:-1]), lines
    assert parsed_subject(raw) == f"[redirected from {', '.join(origins)}] {PLAIN}"


@pytest.mark.parametrize(
    "hostile",
    [
        "mailto:a@example.com\r\nBcc: victim@example.org",
        "https://x.example/\nX-Injected: yes",
        "https://x.example/\rX-Injected: yes",
        "https://x.example/\x00\x1b[31m\x7f",
        "https://x.example/\u2028X-Injected: yes",
        "https://exämple.example/ spaced",
    ],
)
def test_nothing_in_a_destination_can_end_the_subject_or_add_a_header(hostile: str) -> None:
    raw = make(redirected_from=[hostile])
    msg: Any = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(b.isascii() and (b == "\t" or b >= " ") for b in head.decode().replace("\r\n", ""))
    assert "\n" not in str(msg["Subject"]) and str(msg["Subject"]).endswith(PLAIN)


def test_a_long_list_is_cut_and_said_to_be_cut() -> None:
    origins = [f"mailto:r{n}@example.com" for n in range(14)] + ["https://x.example/" + "a" * 900]
    text = " ".join(redirected_subject(origins, PLAIN))
    assert "mailto:r9@example.com, (and 5 more)]" in text
    assert "r10@" not in text


def test_redirect_keeps_the_real_destinations_as_skipped_and_adds_the_target() -> None:
    found = [
        Destination("mailto:tlsrpt@example.com", "pending"),
        Destination("https://r.example/", "pending"),
        Destination("https://r.example/2", "skipped", "host cap"),
        Destination("mailto:capped@example.com", "given-up", "cap"),
    ]
    note = "redirected to mailto:ops@example.net (reporter.redirect)"
    assert redirect.apply(found, "mailto:ops@example.net") == [
        Destination("mailto:tlsrpt@example.com", "skipped", note),
        Destination("https://r.example/", "skipped", note),
        Destination("https://r.example/2", "skipped", "host cap"),
        Destination("mailto:capped@example.com", "given-up", "cap"),
        Destination("mailto:ops@example.net", "pending"),
    ]
    # Nothing pending: nothing would have been sent, so nothing is redirected.
    assert redirect.apply(found[2:], "mailto:ops@example.net") == found[2:]
    # The operator's own rua is the redirect's delivery itself, not a second row.
    own = [Destination("mailto:ops@example.net", "pending")]
    assert redirect.apply(own, "mailto:ops@example.net") == own
