"""``inspect`` through the real CLI on reports from our builder, our mail code and by hand."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import tracemalloc
import zlib
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from support.paths import ROOT

from tlsrpt_reporter import cli
from tlsrpt_reporter.deliver import mail
from tlsrpt_reporter.model import RESULT_TYPES
from tlsrpt_reporter.report import document as report
from tlsrpt_reporter.report.reading import ReportFileError, gunzip, read_report
from tlsrpt_reporter.report.result_types import ADVICE

DAY = "2026-03-01"
IDENTITY = report.Identity("Example Mail Ltd", "tlsrpt@example.net")
DOCS = ROOT / "docs" / "result-types.md"


def export_line() -> dict[str, Any]:
    return {
        "day": DAY,
        "domain": "example.com",
        "record": "v=TLSRPTv1; rua=mailto:tlsrpt@example.com",
        "policy": {
            "policy-type": "sts",
            "policy-domain": "example.com",
            "policy-string": ["version: STSv1", "mode: enforce", "mx: mail.example.com"],
            "mx-host": ["mail.example.com"],
        },
        "summary": {"total-successful-session-count": 1840, "total-failure-session-count": 3},
        "failure-details": [
            {
                "result-type": "certificate-expired",
                "sending-mta-ip": "192.0.2.10",
                "receiving-mx-hostname": "mail.example.com",
                "receiving-ip": "198.51.100.7",
                "failed-session-count": 3,
            }
        ],
    }


@pytest.fixture
def built() -> report.BuiltReport:
    return report.build(DAY, "example.com", [export_line()], IDENTITY)


def our_mail(built: report.BuiltReport) -> bytes:
    return mail.compose(
        report_domain=built.domain,
        submitter=IDENTITY.submitter,
        report_id=built.report_id,
        from_addr="tlsrpt-noreply@example.net",
        to_addrs=["tlsrpt@example.com"],
        gzip_body=built.gzip_bytes,
        filename=built.filename,
        summary_text=report.summary_text(built, IDENTITY),
        date=dt.datetime(2026, 3, 2, 3, 4, 5, tzinfo=dt.UTC),
        message_id="m1.abc@example.net",
    )


def received_report() -> dict[str, Any]:
    """Another generator's shape, written by hand per RFC 8460 §4.4: DANE and no-policy
    results, failure-reason-code, HELO and additional information."""
    return {
        "organization-name": "Other Provider Inc.",
        "date-range": {
            "start-datetime": "2026-02-28T00:00:00Z",
            "end-datetime": "2026-02-28T23:59:59Z",
        },
        "contact-info": "smtp-tls-reporting@other.example",
        "report-id": "2026-02-28T00:00:00Z_example.com@other.example",
        "policies": [
            {
                "policy": {
                    "policy-type": "tlsa",
                    "policy-string": ["3 1 1 0123456789abcdef0123456789abcdef"],
                    "policy-domain": "mail.example.com",
                },
                "summary": {
                    "total-successful-session-count": 10,
                    "total-failure-session-count": 4,
                },
                "failure-details": [
                    {
                        "result-type": "tlsa-invalid",
                        "sending-mta-ip": "2001:db8::25",
                        "receiving-mx-hostname": "mail.example.com",
                        "receiving-mx-helo": "mx1.hosting.example",
                        "receiving-ip": "203.0.113.9",
                        "failed-session-count": 3,
                        "additional-information": "https://other.example/tlsrpt/why",
                    },
                    {
                        "result-type": "validation-failure",
                        "sending-mta-ip": "192.0.2.77",
                        "receiving-ip": "203.0.113.9",
                        "failed-session-count": 1,
                        "failure-reason-code": "X509_V_ERR_UNSUPPORTED_PROTOCOL",
                    },
                ],
            },
            {
                "policy": {
                    "policy-type": "no-policy-found",
                    "policy-string": [],
                    "policy-domain": "example.com",
                },
                "summary": {
                    "total-successful-session-count": 5,
                    "total-failure-session-count": 0,
                },
            },
        ],
    }


def received_mail(
    headers: dict[str, str], text: str, attachment: bytes, subtype: str, filename: str
) -> bytes:
    """Another generator's mail: ``text``, then ``attachment`` as application/``subtype``."""
    message = EmailMessage()
    for name, value in headers.items():
        message[name] = value
    message.set_content(text)
    message.add_attachment(attachment, maintype="application", subtype=subtype, filename=filename)
    return message.as_bytes()


def inspect(
    capsys: pytest.CaptureFixture[str], path: Path, content: bytes | str | None = None
) -> tuple[int, str, str]:
    """``inspect`` on ``path``, written with ``content`` first unless that is None."""
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    code = cli.main(["inspect", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_our_report(out: str, built: report.BuiltReport) -> None:
    assert "validation:    valid" in out
    assert "organization:  Example Mail Ltd" in out
    assert f"report-id:     {built.report_id}" in out
    assert "2026-03-01T00:00:00Z to 2026-03-01T23:59:59Z" in out
    assert "contact:       tlsrpt@example.net" in out
    assert re.search(r"1\s+sts\s+example\.com\s+1840\s+3", out)
    assert re.search(
        r"certificate-expired\s+mail\.example\.com\s+192\.0\.2\.10\s+198\.51\.100\.7\s+3", out
    )
    assert ADVICE["certificate-expired"].cause in out
    assert ADVICE["certificate-expired"].fix in out
    # Only the result types present are explained.
    assert ADVICE["starttls-not-supported"].cause not in out


# --- our own reports ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        pytest.param("report.json", lambda built: built.json_bytes, [": JSON,"], id="as-json"),
        pytest.param(
            None, lambda built: built.gzip_bytes, ["gzip-compressed JSON"], id="as-json-gz"
        ),
        pytest.param(
            "report.eml",
            our_mail,
            [
                "in a mail attachment (application/tlsrpt+gzip",
                "mail:          TLS-Report-Domain: example.com",
                "mail:          TLS-Report-Submitter: example.net",
            ],
            id="inside-our-mail",
        ),
    ],
)
def test_our_report_in_each_form_is_named_and_shown_in_full(
    tmp_path: Path,
    built: report.BuiltReport,
    capsys: pytest.CaptureFixture[str],
    name: str | None,
    content: Callable[[report.BuiltReport], bytes],
    says: list[str],
) -> None:
    """``name`` None: the report's own filename."""
    code, out, _ = inspect(capsys, tmp_path / (name or built.filename), content(built))
    assert code == 0, out
    for text in says:
        assert text in out
    check_our_report(out, built)


def test_format_is_found_by_content_not_by_name(
    tmp_path: Path, built: report.BuiltReport, capsys: pytest.CaptureFixture[str]
) -> None:
    gz_named_json = (tmp_path / "report.json", built.gzip_bytes, "gzip-compressed JSON")
    mail_named_gz = (tmp_path / "report.json.gz", our_mail(built), "mail attachment")
    for path, content, form in (gz_named_json, mail_named_gz):
        code, out, _ = inspect(capsys, path, content)
        assert code == 0, out
        assert form in out


# --- received reports -----------------------------------------------------------------------------


def test_received_report_shows_every_policy_detail_and_explanation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = inspect(
        capsys, tmp_path / "received.json", json.dumps(received_report(), indent=2)
    )
    assert code == 0, out
    assert re.search(r"1\s+tlsa\s+mail\.example\.com\s+10\s+4", out)
    assert re.search(r"2\s+no-policy-found\s+example\.com\s+5\s+0", out)
    assert "mail.example.com (HELO mx1.hosting.example)" in out
    assert re.search(r"validation-failure\s+-\s+192\.0\.2\.77\s+203\.0\.113\.9\s+1", out)
    assert "failure-reason-code X509_V_ERR_UNSUPPORTED_PROTOCOL" in out
    assert "additional-information https://other.example/tlsrpt/why" in out
    for result_type in ("tlsa-invalid", "validation-failure"):
        assert ADVICE[result_type].cause in out
        assert ADVICE[result_type].fix in out
    # Not the msg-id our own reports carry, but RFC 8460 §4.4 lets report-id be any unique
    # text: no warning about another sender's choice.
    assert "valid (RFC 8460 §4.4, as checked by the project's schema)\n" in out
    assert "warning" not in out


def test_rfc3339_offsets_warn_but_other_times_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = received_report()
    document["date-range"]["start-datetime"] = "2026-02-28T00:00:00.000+00:00"
    document["date-range"]["end-datetime"] = "yesterday"
    code, out, _ = inspect(capsys, tmp_path / "times.json", json.dumps(document))
    assert code == 1
    assert "  warning  $.date-range.start-datetime: '2026-02-28T00:00:00.000+00:00'" in out
    assert "  error    $.date-range.end-datetime: 'yesterday' does not match" in out


def test_received_mail_with_a_generic_gzip_attachment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {
        "From": "noreply-smtp-tls-reporting@other.example",
        "Subject": "Report Domain: example.com Submitter: other.example Report-ID: <x@y>",
    }
    report_gz = gzip.compress(json.dumps(received_report()).encode())
    filename = "other.example!example.com!1772236800!1772323199.json.gz"
    message = received_mail(headers, "Here is your report.", report_gz, "gzip", filename)
    code, out, _ = inspect(capsys, tmp_path / "received.eml", message)
    assert code == 0, out
    assert "in a mail attachment (application/gzip, other.example!example.com!" in out
    assert "organization:  Other Provider Inc." in out


def test_received_mail_with_a_json_report_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {"From": "reports@other.example"}
    document = json.dumps(received_report()).encode()
    message = received_mail(headers, "Report attached.", document, "tlsrpt+json", "report.json")
    code, out, _ = inspect(capsys, tmp_path / "received.eml", message)
    assert code == 0, out
    assert "JSON in a mail attachment (application/tlsrpt+json" in out


# --- invalid and hostile input --------------------------------------------------------------------


def test_missing_required_field_fails_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = received_report()
    del document["policies"][0]["summary"]["total-failure-session-count"]
    document["policies"][0]["failure-details"][1]["result-type"] = "certificate-revoked"
    code, out, _ = inspect(capsys, tmp_path / "bad.json", json.dumps(document))
    assert code == 1
    assert "validation:    INVALID, 2 problem(s):" in out
    assert "$.policies[0].summary: 'total-failure-session-count' is a required property" in out
    assert "$.policies[0].failure-details[1].result-type: 'certificate-revoked'" in out
    # Still shown, with the unknown result type marked as such.
    assert "not one of the eleven RFC 8460 result types" in out


def test_missing_top_level_field_names_the_top(
    tmp_path: Path, built: report.BuiltReport, capsys: pytest.CaptureFixture[str]
) -> None:
    document = dict(built.document)
    del document["report-id"]
    code, out, _ = inspect(
        capsys, tmp_path / "bad.json.gz", gzip.compress(json.dumps(document).encode())
    )
    assert code == 1
    assert "$: 'report-id' is a required property" in out
    assert "report-id:     -" in out


def test_duplicate_keys_make_a_report_invalid(
    tmp_path: Path, built: report.BuiltReport, capsys: pytest.CaptureFixture[str]
) -> None:
    text = built.json_bytes.decode()
    code, out, _ = inspect(
        capsys, tmp_path / "dup.json", text[:-1] + ',"report-id":"other@example.net"}'
    )
    assert code == 1
    assert "the key 'report-id' appears more than once" in out


def test_gzip_bomb_is_refused_without_inflating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 400 MB of zeros in about 400 KB of gzip.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    parts = [compressor.compress(block) for _ in range(400)]
    parts.append(compressor.flush())
    path = tmp_path / "bomb.json.gz"
    path.write_bytes(b"".join(parts))
    tracemalloc.start()
    try:
        code, out, err = inspect(capsys, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 1
    assert "decompresses to more than 52428800 bytes" in err
    assert "gzip bomb" in err
    assert out == ""
    assert peak < 120 * 1024 * 1024  # the 50 MB limit and one copy, not 400 MB


def test_gunzip_stops_at_the_limit_and_reads_every_member() -> None:
    with pytest.raises(ReportFileError, match="more than 1000 bytes"):
        gunzip(gzip.compress(b"x" * 1001), 1000)
    assert gunzip(gzip.compress(b'{"a":') + gzip.compress(b"1}"), 1000) == b'{"a":1}'
    with pytest.raises(ReportFileError, match="truncated"):
        gunzip(gzip.compress(b"x" * 5000)[:-20], 10_000)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "neither gzip"),
        (b"just some text\nand more\n", "neither gzip"),
        (b'{"hello": "world"}', "not a TLS-RPT report"),
        (b"[1, 2, 3]", "not a TLS-RPT report"),
        (b'{"organization-name": "x",', "not valid JSON"),
        (b"Subject: hi\r\nContent-Type: text/plain\r\n\r\nhello\r\n", "without a TLS-RPT report"),
        (gzip.compress(b"\xff\xfe not utf-8"), "not UTF-8"),
    ],
)
def test_non_report_files_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    code, out, err = inspect(capsys, tmp_path / "thing.json", content)
    assert code == 1
    assert message in err
    assert out == ""


def test_control_characters_from_a_report_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = received_report()
    document["organization-name"] = "Evil\x1b[2J\x1b]0;pwned\x07 Corp"
    code, out, _ = inspect(capsys, tmp_path / "evil.json", json.dumps(document))
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "Evil?[2J?]0;pwned? Corp" in out


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = inspect(capsys, tmp_path / "absent.json")
    assert code == 2
    assert "is not a file" in err


# --- the explanations -----------------------------------------------------------------------------


def test_every_result_type_has_advice() -> None:
    assert set(ADVICE) == set(RESULT_TYPES)


def test_docs_carry_the_same_advice_as_inspect() -> None:
    text = " ".join(DOCS.read_text().split())
    for result_type, advice in ADVICE.items():
        section = text.split(f"## `{result_type}`", 1)[1].split("## ", 1)[0]
        assert f"**Cause.** {advice.cause}" in section, result_type
        assert f"**Fix.** {advice.fix}" in section, result_type


def test_read_report_accepts_an_mbox_style_mail(built: report.BuiltReport) -> None:
    data = b"From tlsrpt-noreply@example.net Mon Mar  2 03:04:05 2026\n" + our_mail(built)
    assert read_report(data).document == built.document
