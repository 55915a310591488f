"""``tlsrpt_reporter.report.inspect``'s verdict and rendering called directly (the command line is
``test_inspect.py``'s): ``json_path``, ``problems`` (errors with their JSON paths, warnings for
our house rules) and ``render`` on valid, invalid and hostile reports."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from tlsrpt_reporter.model import RESULT_TYPES
from tlsrpt_reporter.report import inspect
from tlsrpt_reporter.report.reading import ReportFile, read_report
from tlsrpt_reporter.report.result_types import ADVICE

VALID: dict[str, Any] = {
    "organization-name": "Other Provider Inc.",
    "date-range": {
        "start-datetime": "2026-02-28T00:00:00Z",
        "end-datetime": "2026-02-28T23:59:59Z",
    },
    "contact-info": "smtp-tls-reporting@other.example",
    "report-id": "2026.02.28.abc@other.example",
    "policies": [
        {
            "policy": {
                "policy-type": "sts",
                "policy-string": ["version: STSv1", "mode: enforce", "mx: mail.example.com"],
                "policy-domain": "example.com",
                "mx-host": ["mail.example.com"],
            },
            "summary": {
                "total-successful-session-count": 1840,
                "total-failure-session-count": 4,
            },
            "failure-details": [
                {
                    "result-type": "certificate-expired",
                    "sending-mta-ip": "192.0.2.10",
                    "receiving-mx-hostname": "mail.example.com",
                    "receiving-mx-helo": "mx1.hosting.example",
                    "receiving-ip": "198.51.100.7",
                    "failed-session-count": 3,
                    "additional-information": "https://other.example/why",
                },
                {
                    "result-type": "validation-failure",
                    "sending-mta-ip": "2001:db8::25",
                    "receiving-ip": "198.51.100.7",
                    "failed-session-count": 1,
                    "failure-reason-code": "X509_V_ERR_UNSUPPORTED_PROTOCOL",
                },
            ],
        },
        {
            "policy": {
                "policy-type": "no-policy-found",
                "policy-string": [],
                "policy-domain": "example.org",
            },
            "summary": {
                "total-successful-session-count": 5,
                "total-failure-session-count": 0,
            },
        },
    ],
}


def valid() -> dict[str, Any]:
    return copy.deepcopy(VALID)


def as_file(document: Any, problems: tuple[str, ...] = ()) -> ReportFile:
    return ReportFile(document, "JSON", len(json.dumps(document)), problems=problems)


def shown(document: Any) -> str:
    """What inspect prints for ``document``, verdict included."""
    report = as_file(document)
    errors, warnings = inspect.problems(report)
    return inspect.render("report.json", report, errors, warnings)


def no_control_characters(text: str) -> bool:
    return all(ch == "\n" or ch.isprintable() for ch in text)


# --- json_path --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), "$"),
        (("policies",), "$.policies"),
        (("policies", 0, "failure-details", 2, "result-type"),
         "$.policies[0].failure-details[2].result-type"),
        (("date-range", "end-datetime"), "$.date-range.end-datetime"),
    ],
)  # fmt: skip
def test_json_path_writes_keys_with_dots_and_indexes_in_brackets(
    path: tuple[str | int, ...], expected: str
) -> None:
    assert inspect.json_path(path) == expected


# --- valid reports ----------------------------------------------------------------------------


def test_a_valid_report_has_no_errors_or_warnings() -> None:
    assert inspect.problems(as_file(valid())) == ([], [])


def test_a_valid_report_renders_who_when_and_each_policy() -> None:
    out = shown(valid())
    lines = out.splitlines()
    size = len(json.dumps(VALID))
    assert lines[0] == f"file:          report.json: JSON, {size} bytes of JSON"
    assert "validation:    valid (RFC 8460 §4.4, as checked by the project's schema)" in lines
    assert "organization:  Other Provider Inc." in lines
    assert "report-id:     2026.02.28.abc@other.example" in lines
    assert "date range:    2026-02-28T00:00:00Z to 2026-02-28T23:59:59Z" in lines
    assert "contact:       smtp-tls-reporting@other.example" in lines
    assert "policies (2):" in lines
    assert re.search(r"^  #\s+type\s+domain\s+successful\s+failed$", out, re.M)
    assert re.search(r"^  1\s+sts\s+example\.com\s+1840\s+4$", out, re.M)
    assert re.search(r"^  2\s+no-policy-found\s+example\.org\s+5\s+0$", out, re.M)
    assert out.endswith("\n")


def test_a_valid_report_renders_each_failure_detail_and_its_reasons() -> None:
    out = shown(valid())
    assert "failure details (2):" in out
    assert re.search(
        r"^  1\s+certificate-expired\s+mail\.example\.com \(HELO mx1\.hosting\.example\)\s+"
        r"192\.0\.2\.10\s+198\.51\.100\.7\s+3$",
        out,
        re.M,
    )
    # A detail without receiving-mx-hostname shows "-" in its place.
    assert re.search(
        r"^  1\s+validation-failure\s+-\s+2001:db8::25\s+198\.51\.100\.7\s+1$", out, re.M
    )
    assert (
        "  policy 1, certificate-expired: additional-information https://other.example/why" in out
    )
    assert (
        "  policy 1, validation-failure: failure-reason-code X509_V_ERR_UNSUPPORTED_PROTOCOL" in out
    )


def test_the_helo_is_shown_only_when_it_differs_from_the_mx_name() -> None:
    doc = valid()
    doc["policies"][0]["failure-details"][0]["receiving-mx-helo"] = "mail.example.com"
    out = shown(doc)
    assert "HELO" not in out
    assert re.search(r"certificate-expired\s+mail\.example\.com\s+192\.0\.2\.10", out)


def test_result_types_are_explained_most_failed_sessions_first() -> None:
    out = shown(valid())
    head = out.index("what the result types mean:")
    expired = out.index("  certificate-expired (3 failed sessions)")
    validation = out.index("  validation-failure (1 failed sessions)")
    assert head < expired < validation
    assert f"    cause: {ADVICE['certificate-expired'].cause}" in out
    assert f"    fix:   {ADVICE['certificate-expired'].fix}" in out
    assert f"    cause: {ADVICE['validation-failure'].cause}" in out
    for other in set(RESULT_TYPES) - {"certificate-expired", "validation-failure"}:
        assert ADVICE[other].cause not in out  # only the types present are explained


def test_result_types_are_ordered_by_failed_sessions_then_by_name() -> None:
    doc = valid()
    details = doc["policies"][0]["failure-details"]
    details[1]["failed-session-count"] = 30  # validation-failure now leads
    # Ties with certificate-expired, and comes first in the report.
    details.insert(0, dict(details[0], **{"result-type": "tlsa-invalid"}))
    out = shown(doc)
    order = [
        out.index("  validation-failure (30 failed sessions)"),
        out.index("  certificate-expired (3 failed sessions)"),
        out.index("  tlsa-invalid (3 failed sessions)"),
    ]
    assert order == sorted(order)


def test_counts_of_one_result_type_add_up_across_policies() -> None:
    doc = valid()
    doc["policies"][1]["failure-details"] = [
        {
            "result-type": "certificate-expired",
            "sending-mta-ip": "192.0.2.11",
            "receiving-ip": "198.51.100.8",
            "failed-session-count": 7,
        }
    ]
    doc["policies"][1]["summary"]["total-failure-session-count"] = 7
    out = shown(doc)
    assert "  certificate-expired (10 failed sessions)" in out
    assert re.search(r"^  2\s+certificate-expired\s+-\s+192\.0\.2\.11", out, re.M)


def test_a_report_without_failure_details_says_so() -> None:
    doc = valid()
    del doc["policies"][0]["failure-details"]
    out = shown(doc)
    assert "failure details: none (no failed sessions were detailed)" in out
    assert "what the result types mean:" not in out


def test_mail_headers_and_notes_are_shown_above_the_verdict() -> None:
    report = ReportFile(
        valid(),
        "gzip-compressed JSON in a mail attachment (application/tlsrpt+gzip)",
        123,
        notes=("the JSON starts with a byte order mark, which JSON texts must not",),
        mail_headers=(("From", "reports@other.example"), ("TLS-Report-Domain", "example.com")),
    )
    lines = inspect.render("m.eml", report, [], []).splitlines()
    assert lines[:5] == [
        "file:          m.eml: gzip-compressed JSON in a mail attachment "
        "(application/tlsrpt+gzip), 123 bytes of JSON",
        "mail:          From: reports@other.example",
        "mail:          TLS-Report-Domain: example.com",
        "note:          the JSON starts with a byte order mark, which JSON texts must not",
        "validation:    valid (RFC 8460 §4.4, as checked by the project's schema)",
    ]


# --- invalid reports --------------------------------------------------------------------------


def broken() -> dict[str, Any]:
    doc = valid()
    del doc["organization-name"]
    doc["date-range"]["end-datetime"] = "yesterday"
    doc["policies"][0]["summary"]["total-failure-session-count"] = "4"
    doc["policies"][0]["failure-details"][1]["result-type"] = "bogus-type"
    doc["policies"][1]["policy"]["policy-type"] = "dane"
    return doc


def test_each_schema_violation_is_an_error_with_its_json_path() -> None:
    errors, warnings = inspect.problems(as_file(broken()))
    assert warnings == []
    paths = [error.split(": ", 1)[0] for error in errors]
    assert sorted(paths) == sorted(
        [
            "$",
            "$.date-range.end-datetime",
            "$.policies[0].summary.total-failure-session-count",
            "$.policies[0].failure-details[1].result-type",
            "$.policies[1].policy.policy-type",
        ]
    )
    by_path = dict(error.split(": ", 1) for error in errors)
    assert "'organization-name' is a required property" in by_path["$"]
    assert "'bogus-type'" in by_path["$.policies[0].failure-details[1].result-type"]
    assert (
        "'4' is not of type 'integer'"
        in by_path["$.policies[0].summary.total-failure-session-count"]
    )


def test_an_invalid_report_renders_invalid_with_every_problem_listed() -> None:
    report = as_file(broken())
    errors, warnings = inspect.problems(report)
    out = inspect.render("bad.json", report, errors, warnings)
    assert f"validation:    INVALID, {len(errors)} problem(s):" in out
    for error in errors:
        assert f"\n  error    {error}\n" in out
    assert "validation:    valid" not in out
    # The rest is still shown, as far as it goes.
    assert "organization:  -" in out
    assert "date range:    2026-02-28T00:00:00Z to yesterday" in out
    assert "  bogus-type (1 failed sessions)" in out
    assert "    not one of the eleven RFC 8460 result types: no advice" in out


def test_i_json_problems_found_while_reading_are_errors_too() -> None:
    rest = json.dumps(valid())[1:].replace('"organization-name": "Other Provider Inc.", ', "")
    report = read_report(b'{"organization-name": "A", "organization-name": "B", ' + rest.encode())
    errors, _ = inspect.problems(report)
    assert errors == [
        "the key 'organization-name' appears more than once in one object (the last one is shown)"
    ]
    out = inspect.render("dup.json", report, errors)
    assert "validation:    INVALID, 1 problem(s):" in out
    assert "organization:  B" in out


def test_house_rules_are_warnings_not_errors() -> None:
    doc = valid()
    doc["date-range"]["start-datetime"] = "2026-02-28T00:00:00+00:00"  # RFC 3339, not ours
    doc["date-range"]["end-datetime"] = "2026-02-28T23:59:59.999Z"
    report = as_file(doc)
    errors, warnings = inspect.problems(report)
    assert errors == []
    assert sorted(w.split(": ", 1)[0] for w in warnings) == [
        "$.date-range.end-datetime",
        "$.date-range.start-datetime",
    ]
    assert all("valid RFC 3339, though we write whole seconds in UTC" in w for w in warnings)
    out = inspect.render("r.json", report, errors, warnings)
    verdict = "validation:    valid (RFC 8460 §4.4, as checked by the project's schema)"
    assert f"{verdict}, 2 warning(s):" in out
    assert out.count("\n  warning  $.") == 2


@pytest.mark.parametrize(
    "report_id",
    [
        "2026-02-28T00:00:00Z_example.com",  # a time stamp and the domain, as large senders do
        "<2026.02.28.x@other.example>",  # a msg-id with its angle brackets
        "133215421353524562",  # a number
        "report 7 for example.com",  # words
    ],
)
def test_another_senders_report_id_is_free_form_and_draws_no_warning(report_id: str) -> None:
    """RFC 8460 §4.4: report-id is any unique identifier; our msg-id form is ours alone."""
    doc = valid()
    doc["report-id"] = report_id
    assert inspect.problems(as_file(doc)) == ([], [])


@pytest.mark.parametrize("report_id", ["", "   ", 42, None])
def test_an_empty_or_non_text_report_id_is_still_an_error(report_id: object) -> None:
    doc = valid()
    doc["report-id"] = report_id
    errors, _ = inspect.problems(as_file(doc))
    assert [e.split(": ", 1)[0] for e in errors] == ["$.report-id"]


def test_a_time_that_is_not_rfc_3339_is_an_error_not_a_warning() -> None:
    doc = valid()
    doc["date-range"]["start-datetime"] = "28 Feb 2026"
    errors, warnings = inspect.problems(as_file(doc))
    assert [e.split(": ", 1)[0] for e in errors] == ["$.date-range.start-datetime"]
    assert warnings == []


# --- hostile values ---------------------------------------------------------------------------


def test_control_characters_are_replaced_everywhere_they_are_shown() -> None:
    doc = valid()
    doc["organization-name"] = "Evil\x1b[2J\x1b]0;pwned\x07 Inc.\r\nfake line"
    doc["policies"][0]["policy"]["policy-domain"] = "example.com\x00\x9b31m"
    doc["policies"][0]["failure-details"][0]["failure-reason-code"] = "\x1b[31mred\u202e"
    doc["policies"][0]["failure-details"][0]["result-type"] = "certificate-expired\x1b[0m"
    report = ReportFile(
        doc, "JSON", 1, notes=("a \x1b[5m note",), mail_headers=(("Subject", "s\x1bx"),)
    )
    errors, warnings = inspect.problems(report)
    out = inspect.render("evil\x1b[1m.json", report, errors, warnings)
    assert no_control_characters(out), repr(out)
    assert "organization:  Evil?[2J?]0;pwned? Inc.??fake line" in out
    assert "example.com??31m" in out
    assert "failure-reason-code ?[31mred?" in out
    assert "file:          evil?[1m.json" in out
    assert all(no_control_characters(line) for line in errors + warnings)


def test_huge_values_are_shortened() -> None:
    doc = valid()
    doc["organization-name"] = "A" * 1_000_000
    doc["policies"][0]["failure-details"][0]["receiving-mx-hostname"] = "m" * 50_000
    doc["date-range"]["end-datetime"] = "2026-02-28T23:59:59" + "9" * 1_000_000  # an error
    doc["policies"][0]["policy"]["policy-type"] = "t" * 1_000_000  # an error quotes it
    report = as_file(doc)
    errors, warnings = inspect.problems(report)
    assert all(len(line) < 600 for line in errors + warnings)
    out = inspect.render("big.json", report, errors, warnings)
    assert f"organization:  {'A' * 120}...\n" in out
    assert "m" * 121 not in out
    assert max(len(line) for line in out.splitlines()) < 1000


HOSTILE_SHAPES: list[tuple[str, Any]] = [
    ("policies is a string", {"policies": "everything"}),
    ("policies holds numbers and nulls", {"policies": [1, None, "x", []]}),
    ("policy and summary are lists", {"policies": [{"policy": [1], "summary": ["a"]}]}),
    ("failure-details is an object", {"policies": [{"failure-details": {"result-type": "x"}}]}),
    (
        "failure details of wrong types",
        {
            "policies": [
                {
                    "failure-details": [
                        7,
                        None,
                        {"result-type": ["a", {"b": 1}], "failed-session-count": True},
                        {"result-type": None, "failed-session-count": 1e308},
                        {"result-type": {"x": 1}, "failed-session-count": -5},
                        {"receiving-mx-helo": 42, "receiving-mx-hostname": ["a", "b"]},
                        {"failure-reason-code": {"nested": ["\x1b"]}},
                    ]
                }
            ]
        },
    ),
    ("date-range is a number", {"date-range": 20260228, "organization-name": None}),
    ("everything null", dict.fromkeys(["organization-name", "date-range", "contact-info",
                                       "report-id", "policies"])),
    ("deep nesting", {"organization-name": [[[[["deep"]]]]], "policies": [{"policy": {
        "policy-domain": {"a": {"b": {"c": "d"}}}}}]}),
]  # fmt: skip


@pytest.mark.parametrize(
    "document", [doc for _, doc in HOSTILE_SHAPES], ids=[name for name, _ in HOSTILE_SHAPES]
)
def test_hostile_shapes_render_without_raising_and_are_invalid(document: Any) -> None:
    report = as_file(document)
    errors, _ = inspect.problems(report)
    assert errors  # none of these is a valid report
    out = inspect.render("hostile.json", report, errors)
    assert out.startswith("file:          hostile.json: JSON,")
    assert f"validation:    INVALID, {len(errors)} problem(s):" in out
    assert no_control_characters(out)


def test_containers_of_the_wrong_type_count_as_empty() -> None:
    assert "policies (0):" in shown({"policies": "sts"})  # not three policies "s", "t", "s"
    out = shown({"policies": [{"failure-details": {"result-type": "starttls-not-supported"}}]})
    assert "failure details: none (no failed sessions were detailed)" in out
    out = shown({"policies": [{"policy": ["sts", "example.com"], "summary": [1, 2]}]})
    assert re.search(r"^  1\s+-\s+-\s+-\s+-$", out, re.M)


def test_wrong_typed_counts_do_not_add_to_a_result_types_total() -> None:
    doc = valid()
    details = doc["policies"][0]["failure-details"]
    details[0]["failed-session-count"] = True  # a bool is not a count
    details[1]["result-type"] = "certificate-expired"
    details[1]["failed-session-count"] = "1000"
    out = shown(doc)
    assert "  certificate-expired (0 failed sessions)" in out
