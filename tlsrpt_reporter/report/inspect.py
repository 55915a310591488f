"""``inspect``: show any TLS-RPT report file to a human, and say whether it is valid.

This module owns the command's verdict and its text: every schema violation with its JSON path,
then the report as tables (who, when, each policy, each failure detail) and, for each result type
present, its likely cause and fix (:mod:`tlsrpt_reporter.report.result_types`). Reading the file's
bytes into a report is :mod:`tlsrpt_reporter.report.reading`'s job; validation is the project's
own schema (:mod:`tlsrpt_reporter.report.schema`), the one our reports must meet, which is stricter
than RFC 8460 in places (UTC ``Z`` times, arrays for ``mx-host``).

Reading files and folders, and the one-line verdicts of many files, are
:mod:`tlsrpt_reporter.report.inspect_files`'s; the DKIM verdict on a mail is
:mod:`tlsrpt_reporter.report.inspect_dkim`'s.

Rendering is pure and tolerates any shape: a received report is untrusted input, so every value
is shown with control characters replaced (no terminal escapes) and long values shortened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from tlsrpt_reporter.report import reading as report_file
from tlsrpt_reporter.report import schema
from tlsrpt_reporter.report.inspect_dkim import DkimVerdict
from tlsrpt_reporter.report.result_types import ADVICE

_SHOW = 120


def json_path(path: Sequence[str | int]) -> str:
    """``$.policies[0].failure-details[2].result-type`` for a path of keys and indexes."""
    out = "$"
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    return out


def problems(report: report_file.ReportFile) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a report: schema violations with their paths, and I-JSON breaches.

    A violation of a rule the schema adds for our own reports, beyond what RFC 8460 asks of a
    received one, is a warning (:func:`_house_rule`).
    """
    errors: list[str] = []
    warnings: list[str] = []
    for violation in schema.violations(report.document):
        if _free_form(violation):
            continue
        where = json_path(violation.path)
        why = _house_rule(violation)
        if why:
            warnings.append(f"{where}: {clean(repr(violation.value))}: {why}")
        else:
            errors.append(f"{where}: {clean(violation.message, 300)}")
    return errors + list(report.problems), warnings


def _free_form(violation: schema.Violation) -> bool:
    """A violation of a format only our own reports keep, which says nothing about anyone
    else's: RFC 8460 §4.4 makes report-id any unique text (only the mail's Subject, §5.3, needs
    a msg-id; large senders write a time stamp and the domain). Our builder checks its own
    report-ids against the schema before anything is sent."""
    return (
        violation.path == ("report-id",)
        and violation.keyword == "pattern"
        and isinstance(violation.value, str)
        and violation.value.strip() != ""
    )


def _house_rule(violation: schema.Violation) -> str:
    """Why a violation is only of this project's own sending rules, or "" when it is real."""
    if violation.keyword != "pattern" or not isinstance(violation.value, str):
        return ""
    if violation.path[-1:] in (("start-datetime",), ("end-datetime",)):
        try:
            dt.datetime.fromisoformat(violation.value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return ""
        # RFC 3339 allows offsets and fractions of a second; we write UTC with "Z".
        return "valid RFC 3339, though we write whole seconds in UTC with 'Z'"
    return ""


def render(
    name: str,
    report: report_file.ReportFile,
    invalid: Sequence[str],
    warnings: Sequence[str] = (),
    dkim: DkimVerdict | None = None,
) -> str:
    """The whole text ``inspect`` prints for a report read from ``name`` (``dkim``: the verdict
    on the mail that carried it)."""
    doc = report.document
    lines = [f"file:          {clean(name)}: {report.form}, {report.json_bytes} bytes of JSON"]
    lines += [f"mail:          {key}: {clean(value)}" for key, value in report.mail_headers]
    if dkim is not None:
        lines.append(f"DKIM:          {dkim.line()}")
        if len(dkim.signatures) > 1:
            lines += [
                f"  signature  d={s.domain} s={s.selector}: {s.result}, {s.reason}"
                for s in dkim.signatures
            ]
    lines += [f"note:          {clean(note)}" for note in report.notes]
    if invalid:
        lines.append(f"validation:    INVALID, {len(invalid)} problem(s):")
        lines += [f"  error    {problem}" for problem in invalid]
    else:
        lines.append(
            "validation:    valid (RFC 8460 §4.4, as checked by the project's schema)"
            + (f", {len(warnings)} warning(s):" if warnings else "")
        )
    lines += [f"  warning  {warning}" for warning in warnings]
    dates = _dict(doc.get("date-range"))
    lines += [
        "",
        f"organization:  {_field(doc, 'organization-name')}",
        f"report-id:     {_field(doc, 'report-id')}",
        f"date range:    {_field(dates, 'start-datetime')} to {_field(dates, 'end-datetime')}",
        f"contact:       {_field(doc, 'contact-info')}",
    ]
    policies = [_dict(p) for p in _list(doc.get("policies"))]
    lines += ["", f"policies ({len(policies)}):"]
    rows = [["#", "type", "domain", "successful", "failed"]]
    for number, entry in enumerate(policies, 1):
        policy, summary = _dict(entry.get("policy")), _dict(entry.get("summary"))
        rows.append(
            [
                str(number),
                _field(policy, "policy-type"),
                _field(policy, "policy-domain"),
                _field(summary, "total-successful-session-count"),
                _field(summary, "total-failure-session-count"),
            ]
        )
    lines += _table(rows)
    counts: dict[str, int] = {}
    detail_rows = [["policy", "result-type", "MX", "sending IP", "receiving IP", "count"]]
    reasons: list[str] = []
    for number, entry in enumerate(policies, 1):
        for detail in (_dict(d) for d in _list(entry.get("failure-details"))):
            result_type = _field(detail, "result-type")
            count = detail.get("failed-session-count")
            if isinstance(count, int) and not isinstance(count, bool):
                counts[result_type] = counts.get(result_type, 0) + count
            else:
                counts.setdefault(result_type, 0)
            mx = _field(detail, "receiving-mx-hostname")
            helo = detail.get("receiving-mx-helo")
            if helo is not None and clean(helo) != mx:
                mx += f" (HELO {clean(helo)})"
            detail_rows.append(
                [
                    str(number),
                    result_type,
                    mx,
                    _field(detail, "sending-mta-ip"),
                    _field(detail, "receiving-ip"),
                    _field(detail, "failed-session-count"),
                ]
            )
            for key in ("failure-reason-code", "additional-information"):
                if key in detail:
                    reasons.append(f"  policy {number}, {result_type}: {key} {_field(detail, key)}")
    if len(detail_rows) > 1:
        lines += ["", f"failure details ({len(detail_rows) - 1}):", *_table(detail_rows), *reasons]
    else:
        lines += ["", "failure details: none (no failed sessions were detailed)"]
    if counts:
        lines += ["", "what the result types mean:"]
        for result_type, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines += _advice(result_type, count)
    return "\n".join(lines) + "\n"


def _advice(result_type: str, count: int) -> list[str]:
    advice = ADVICE.get(result_type)
    head = f"  {result_type} ({count} failed sessions)"
    if advice is None:
        return [head, "    not one of the eleven RFC 8460 result types: no advice"]
    return [head, f"    cause: {advice.cause}", f"    fix:   {advice.fix}"]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _field(obj: dict[str, Any], key: str) -> str:
    if key not in obj:
        return "-"
    value = obj[key]
    if isinstance(value, list):
        return ", ".join(clean(item) for item in value) or "[]"
    return clean(value)


def clean(value: Any, limit: int = _SHOW) -> str:
    """``value`` as one printable line: untrusted text must not drive the terminal."""
    text = value if isinstance(value, str) else str(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit] + "..."
