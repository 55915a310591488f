"""``tlsrpt-reporter inspect PATH...``: the files to look at, each one's verdict, the exit code.

This module owns finding the report files (a folder is searched for ``.json``, ``.json.gz``,
``.gz`` and ``.eml`` files, in name order), reading each one with a size bound, and the output:
one file named alone gets :func:`tlsrpt_reporter.report.inspect.render`'s full text, several
files (or a folder) one line each and a summary line ``N files: V valid, I invalid``. The exit
code is 0 only when every file is valid.

It decides nothing about a report itself (``inspect.problems`` does) nor about a signature
(``inspect_dkim`` does), and it never follows anything a report names.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.errors import ConfigError, InputError, TlsRptError
from tlsrpt_reporter.report import inspect, inspect_dkim
from tlsrpt_reporter.report import reading as report_file

EXIT_OK, EXIT_FAILURE = 0, 1
# A compressed report or mail bigger than this is refused unread (the JSON limit is
# report_file.MAX_REPORT_BYTES).
MAX_FILE_BYTES = 50 * 1024 * 1024
#: What a folder is searched for: RFC 8460 §5.1 names reports .json or .json.gz; mails are .eml.
REPORT_SUFFIXES = (".json", ".json.gz", ".gz", ".eml")
_MAIL_FORM = "in a mail attachment"


@dataclass(frozen=True)
class Inspected:
    """One file's verdict: the report (None when none could be read, ``unreadable`` says why),
    its errors and warnings, and the DKIM verdict when it came in a mail."""

    path: str
    report: report_file.ReportFile | None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    dkim: inspect_dkim.DkimVerdict | None = None
    unreadable: str = ""

    @property
    def valid(self) -> bool:
        """A report was read and nothing in it (or in its signature, when required) is wrong."""
        return self.report is not None and not self.errors


def find(paths: Sequence[str]) -> list[str]:
    """The files to inspect: each file named, and every report-like file under each folder
    named (recursively, in path order). ConfigError for a path that is neither."""
    found: list[str] = []
    for path in paths:
        if os.path.isfile(path):
            found.append(path)
        elif os.path.isdir(path):
            found += _walk(path)
        else:
            raise ConfigError(f"inspect: {path} is not a file or folder: check the path")
    return found


def _walk(folder: str) -> list[str]:
    found: list[str] = []

    def failed(exc: OSError) -> None:
        raise TlsRptError(f"inspect: cannot list {exc.filename}: {exc.strerror}")

    for top, _, names in os.walk(folder, onerror=failed):
        found += [
            os.path.join(top, name)
            for name in sorted(names)
            if name.lower().endswith(REPORT_SUFFIXES) and os.path.isfile(os.path.join(top, name))
        ]
    # In path order, as ls -R would not but a reader expects: a/b/c before a/d.
    return sorted(found, key=lambda path: os.path.relpath(path, folder).split(os.sep))


def read(path: str) -> bytes:
    """The bytes of ``path``, refused (TlsRptError) beyond :data:`MAX_FILE_BYTES`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TlsRptError(f"inspect: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise TlsRptError(
            f"inspect: {path} is larger than {MAX_FILE_BYTES} bytes; no report is that large"
        )
    return data


def inspect_bytes(
    path: str,
    data: bytes,
    keys: inspect_dkim.KeyLookup | None,
    *,
    require_dkim: bool = False,
) -> Inspected:
    """The verdict on the file ``path`` holding ``data``; a mail's DKIM signatures are checked
    with ``keys`` (None: counted, not checked)."""
    try:
        report = report_file.read_report(data)
    except report_file.ReportFileError as exc:
        return Inspected(path, None, unreadable=str(exc))
    errors, warnings = inspect.problems(report)
    dkim = None
    if _MAIL_FORM in report.form:
        dkim = inspect_dkim.verify(data, keys)
        if require_dkim and dkim.result != "pass":
            # RFC 8460 §5.3: report mail is DKIM-signed; asked to, we hold the sender to it.
            errors.append(f"DKIM: {dkim.line()}, and --require-dkim asks for a valid signature")
    return Inspected(path, report, tuple(errors), tuple(warnings), dkim)


def brief(item: Inspected) -> str:
    """One line for ``item``: its verdict and what is most worth knowing."""
    name = inspect.clean(item.path, 300)
    if item.report is None:
        return f"{name}: INVALID, no report read: {inspect.clean(item.unreadable, 300)}"
    doc = item.report.document if isinstance(item.report.document, dict) else {}
    if item.errors:
        more = f" (and {len(item.errors) - 1} more)" if len(item.errors) > 1 else ""
        text = f"{name}: INVALID, {inspect.clean(item.errors[0], 300)}{more}"
    else:
        warned = f", {len(item.warnings)} warning(s)" if item.warnings else ""
        text = f"{name}: valid{warned}, {_about(doc)}"
    if item.dkim is not None:
        text += f"; DKIM {item.dkim.line()}"
    return text


def _about(doc: dict[str, Any]) -> str:
    org = inspect.clean(doc.get("organization-name", "-"), 60)
    dates = doc.get("date-range")
    start = dates.get("start-datetime", "-") if isinstance(dates, dict) else "-"
    policies = doc.get("policies")
    count = len(policies) if isinstance(policies, list) else 0
    return f"{org}, from {inspect.clean(start, 40)}, {count} {_plural(count, 'policy', 'policies')}"


def summary(items: Sequence[Inspected]) -> str:
    """``3 files: 2 valid, 1 invalid``."""
    valid = sum(1 for item in items if item.valid)
    noun = _plural(len(items), "file", "files")
    return f"{len(items)} {noun}: {valid} valid, {len(items) - valid} invalid"


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def command(
    paths: Sequence[str],
    keys: inspect_dkim.KeyLookup | None = None,
    *,
    require_dkim: bool = False,
) -> int:
    """``tlsrpt-reporter inspect PATH...``: 0 when every file holds a valid report, else 1."""
    files = find(paths)
    if len(paths) == 1 and files == [paths[0]]:
        return _one(paths[0], keys, require_dkim)
    if not files:
        raise InputError(
            f"inspect: no report files ({', '.join(REPORT_SUFFIXES)}) under {', '.join(paths)}"
        )
    items = []
    for path in files:
        try:
            item = inspect_bytes(path, read(path), keys, require_dkim=require_dkim)
        except TlsRptError as exc:  # unreadable or too large: this file's verdict, not the run's
            item = Inspected(path, None, unreadable=str(exc).removeprefix("inspect: "))
        items.append(item)
        print(brief(item), flush=True)
    print(summary(items))
    return EXIT_OK if all(item.valid for item in items) else EXIT_FAILURE


def _one(path: str, keys: inspect_dkim.KeyLookup | None, require_dkim: bool) -> int:
    """One file named alone: the whole report, or why there is none on standard error."""
    item = inspect_bytes(path, read(path), keys, require_dkim=require_dkim)
    if item.report is None:
        print(f"inspect: {path}: {item.unreadable}", file=sys.stderr)
        return EXIT_FAILURE
    print(inspect.render(path, item.report, item.errors, item.warnings, item.dkim), end="")
    return EXIT_OK if item.valid else EXIT_FAILURE
