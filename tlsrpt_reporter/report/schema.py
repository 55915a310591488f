"""Validation of built reports against the JSON Schema the project ships.

The schema is read and compiled once per process: into jsonschema's validator (the authority,
which names every violation) and into plain Python checks (:mod:`.schema_compiled`), which
pass a valid report some twenty times faster; a report they do not pass goes to jsonschema.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from tlsrpt_reporter.errors import InputError
from tlsrpt_reporter.report.schema_compiled import Check, UnsupportedSchema, compile_schema


class SchemaError(InputError):
    """A report does not satisfy the shipped schema; it must not be sent."""


@functools.cache
def _schema() -> dict[str, Any]:
    text = (resources.files("tlsrpt_reporter") / "data" / "tlsrpt-report.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    # FormatChecker: the ipv4/ipv6 formats must be enforced, not just annotated.
    return Draft202012Validator(_schema(), format_checker=FormatChecker())


@functools.cache
def _fast_check() -> Check | None:
    try:
        return compile_schema(_schema(), FormatChecker())
    except UnsupportedSchema:
        return None  # a keyword the compiler does not know: jsonschema alone decides


@dataclass(frozen=True)
class Violation:
    """One schema violation: where (keys and indexes; empty: the top), what, and which rule."""

    path: tuple[str | int, ...]
    message: str
    keyword: str  # the JSON Schema keyword that failed: "required", "pattern", "enum", ...
    value: Any


def violations(document: Any) -> list[Violation]:
    """Every violation of the shipped schema by ``document``, in path order."""
    # Paths that share a prefix share the container there, so keys and indexes never meet.
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    return [
        Violation(tuple(e.absolute_path), e.message, str(e.validator), e.instance) for e in errors
    ]


def validate(document: Any) -> None:
    """Raise SchemaError listing every violation (path and message) of ``document``."""
    check = _fast_check()
    if check is not None and check(document):
        return
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        problems = "; ".join(
            f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in errors[:10]
        )
        raise SchemaError(f"report violates the schema: {problems}")
