"""``inspect``: show any TLS-RPT report file to a human, and say whether it is valid.

This module owns the command's verdict and its text: every schema violation with its JSON path,
then the report as tables (who, when, each policy, each failure detail) and, for each result type
present, its likely cause and fix (:mod:`tlsrpt_reporter.report.result_types`). Reading the file's
bytes into a report is :mod:`tlsrpt_reporter.report.reading`'s job; validation is the project's
own schema (:mod:`tlsrpt_reporter.report.schema`), the one our reports must meet, which is stricter
than RFC 8460 in places (UTC ``Z`` times, arrays for ``mx-host``).

Rendering is pure and tolerates any shape: a received report is untrusted input, so every value
is shown with control characters replaced (no terminal escapes) and long values shortened.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tlsrpt_reporter.errors import ConfigError, TlsRptError
from tlsrpt_reporter.report import reading as report_file
from tlsrpt_reporter.report import schema
from tlsrpt_reporter.report.result_types import ADVICE

EXIT_OK, EXIT_FAILURE = 0, 1
# A compressed report or mail bigger than this is refused unread (the JSON limit is
# report_file.MAX_REPORT_BYTES).
MAX_FILE_BYTES = 50 * 1024 * 1024
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
        where = json_path(violation.path)
        why = _house_rule(violation)
        if why:
            warnings.append(f"{where}: {_clean(repr(violation.value))}: {why}")
        else:
            errors.append(f"{where}: {_clean(violation.message, 300)}")
    return errors + list(report.problems), warnings


def _house_rule(violation: schema.Violation) -> str:
    """Why a violation is only of this project's own sending rules, or "" when it is real."""
    if violation.keyword != "pattern" or not isinstance(violation.value, str):
        return ""
    if violation.path == ("report-id",):
        # RFC 8460 §4.4: report-id is any unique identifier; only the mail's Subject (§5.3)
        # needs a msg-id. Some large senders write a time stamp and the domain.
        return "RFC 8460 §4.4 allows any unique text; we send msg-ids only"
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
) -> str:
    """The whole text ``inspect`` prints for a report read from ``name``."""
    doc = report.document
    lines = [f"file:          {_clean(name)}: {report.form}, {report.json_bytes} bytes of JSON"]
    lines += [f"mail:          {key}: {_clean(value)}" for key, value in report.mail_headers]
    lines += [f"note:          {_clean(note)}" for note in report.notes]
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
            if helo is not None and _clean(helo) != mx:
                mx += f" (HELO {_clean(helo)})"
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
        return ", ".join(_clean(item) for item in value) or "[]"
    return _clean(value)


def _clean(value: Any, limit: int = _SHOW) -> str:
    """``value`` as one printable line: untrusted text must not drive the terminal."""
    text = value if isinstance(value, str) else str(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit] + "..."


def command(path: str) -> int:
    """``tlsrpt-reporter inspect FILE``: 0 valid, 1 invalid or unreadable."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"inspect: {path} is not a file")
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TlsRptError(f"inspect: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise TlsRptError(
            f"inspect: {path} is larger than {MAX_FILE_BYTES} bytes; no report is that large"
        )
    try:
        report = report_file.read_report(data)
    except report_file.ReportFileError as exc:
        print(f"inspect: {path}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    invalid, warnings = problems(report)
    print(render(path, report, invalid, warnings), end="")
    return EXIT_FAILURE if invalid else EXIT_OK
