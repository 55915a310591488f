"""Validation of built reports against the JSON Schema the project ships."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from tlsrpt_reporter.errors import TlsRptError


class SchemaError(TlsRptError):
    """A report does not satisfy the shipped schema; it must not be sent."""


@functools.cache
def _validator() -> Draft202012Validator:
    text = (resources.files("tlsrpt_reporter") / "data" / "tlsrpt-report.schema.json").read_text()
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    # FormatChecker: the ipv4/ipv6 formats must be enforced, not just annotated.
    return Draft202012Validator(schema, format_checker=FormatChecker())


def validate(document: Any) -> None:
    """Raise SchemaError listing every violation (path and message) of ``document``."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        problems = "; ".join(
            f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in errors[:10]
        )
        raise SchemaError(f"report violates the schema: {problems}")
