"""Validation of built reports against the JSON Schema the project ships."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from tlsrpt_reporter.errors import InputError


class SchemaError(InputError):
    """A report does not satisfy the shipped schema; it must not be sent."""


@functools.cache
def _validator() -> Draft202012Validator:
    text = (resources.files("tlsrpt_reporter") / "data" / "tlsrpt-report.schema.json").read_text()
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    # FormatChecker: the ipv4/ipv6 formats must be enforced, not just annotated.
    return Draft202012Validator(schema, format_checker=FormatChecker())


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
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        problems = "; ".join(
            f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in errors[:10]
        )
        raise SchemaError(f"report violates the schema: {problems}")
