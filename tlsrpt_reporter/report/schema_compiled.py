"""The shipped JSON Schema compiled once into plain Python checks: a fast yes-or-no for the
reports the builder makes, so that checking a day of a hundred thousand reports costs seconds,
not minutes (jsonschema walks the schema anew for every document, about 1 ms a report).

Only the keywords the shipped schema uses are compiled, each with JSON Schema 2020-12's
meaning as jsonschema implements it (the formats are jsonschema's own checker); a schema with
any other keyword is refused (:class:`UnsupportedSchema`), and the caller then uses jsonschema
alone. jsonschema stays the authority: ``schema.validate`` asks it for the violations of any
document this check does not pass. Pure code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from jsonschema import FormatChecker

from tlsrpt_reporter.errors import TlsRptError

Check = Callable[[Any], bool]

# Keywords that only describe: they never make a document invalid.
_ANNOTATIONS = frozenset(("$schema", "$id", "$defs", "$comment", "title", "description"))


class UnsupportedSchema(TlsRptError):
    """The schema uses something this compiler does not implement."""


def _is_integer(value: Any) -> bool:
    # JSON Schema: 1.0 is an integer; a boolean is no number at all.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def compile_schema(schema: Mapping[str, Any], formats: FormatChecker) -> Check:
    """A function telling whether a document satisfies ``schema`` (whose ``$ref``s point into
    its own ``$defs``); UnsupportedSchema for a schema it cannot check exactly."""
    defs = schema.get("$defs", {})
    compiled: dict[str, Check] = {}

    def ref(target: str) -> Check:
        name = target.removeprefix("#/$defs/")
        if name == target or name not in defs:
            raise UnsupportedSchema(f"$ref {target!r}: only #/$defs/NAME of the same schema")
        if name not in compiled:

            def late(v: Any) -> bool:  # what a reference to itself meets while compiling
                return compiled[name](v)

            compiled[name] = late
            compiled[name] = node(defs[name])
        return compiled[name]

    def node(sub: Any) -> Check:
        if isinstance(sub, bool):
            return (lambda v: True) if sub else (lambda v: False)
        if not isinstance(sub, dict):
            raise UnsupportedSchema(f"a schema must be an object or a boolean: {sub!r}")
        checks = [
            _keyword(key, value, sub, node=node, ref=ref, formats=formats)
            for key, value in sub.items()
        ]
        return _all([c for c in checks if c is not None])

    return node(schema)


def _all(checks: list[Check]) -> Check:
    """A check passed when each of ``checks`` is."""
    if len(checks) == 1:
        return checks[0]  # one call less, on every node of every report
    return lambda v: all(check(v) for check in checks)


def _keyword(
    key: str,
    value: Any,
    sub: Mapping[str, Any],
    *,
    node: Callable[[Any], Check],
    ref: Callable[[str], Check],
    formats: FormatChecker,
) -> Check | None:
    """The check of one keyword of ``sub`` (None: it checks nothing by itself)."""
    if key in _ANNOTATIONS or key in ("then", "else"):
        return None  # then and else belong to "if"
    if key == "$ref":
        return ref(value)
    if key in _SIMPLE:
        return _SIMPLE[key](value, formats)
    if key in _NESTED:
        return _NESTED[key](value, sub, node)
    raise UnsupportedSchema(f"keyword {key!r}")


def _type(value: Any, _: FormatChecker) -> Check:
    names = [value] if isinstance(value, str) else list(value)
    if any(n not in _TYPES for n in names):
        raise UnsupportedSchema(f"type {value!r}")
    tests = [_TYPES[n] for n in names]
    return tests[0] if len(tests) == 1 else lambda v: any(t(v) for t in tests)


def _enum(value: Any, _: FormatChecker) -> Check:
    # Strings only: jsonschema's equality for numbers and booleans (1 is not True) is not
    # worth copying for a schema that has none.
    if not all(isinstance(x, str) for x in value):
        raise UnsupportedSchema(f"enum of other than strings: {value!r}")
    allowed = frozenset(value)
    return lambda v: isinstance(v, str) and v in allowed


def _pattern(value: Any, _: FormatChecker) -> Check:
    search = re.compile(value).search  # JSON Schema patterns match anywhere, as re.search
    return lambda v: not isinstance(v, str) or search(v) is not None


def _format(value: Any, formats: FormatChecker) -> Check:
    return lambda v: formats.conforms(v, value)


_Make = Callable[[Any, FormatChecker], Check]


def _bound(test: Callable[[Any, Any], bool], applies: Check) -> _Make:
    """A keyword that compares an instance of the type it ``applies`` to with its value."""

    def make(limit: Any, _: FormatChecker) -> Check:
        return lambda v: not applies(v) or test(v, limit)

    return make


_SIMPLE: dict[str, _Make] = {
    "type": _type,
    "enum": _enum,
    "pattern": _pattern,
    "format": _format,
    "minimum": _bound(lambda v, n: v >= n, _is_number),
    "maximum": _bound(lambda v, n: v <= n, _is_number),
    # A string's length in characters (code points), an array's in items.
    "minLength": _bound(lambda v, n: len(v) >= n, lambda v: isinstance(v, str)),
    "maxLength": _bound(lambda v, n: len(v) <= n, lambda v: isinstance(v, str)),
    "minItems": _bound(lambda v, n: len(v) >= n, lambda v: isinstance(v, list)),
    "maxItems": _bound(lambda v, n: len(v) <= n, lambda v: isinstance(v, list)),
    "required": _bound(lambda v, names: all(n in v for n in names), lambda v: isinstance(v, dict)),
}


def _properties(value: Any, sub: Mapping[str, Any], node: Callable[[Any], Check]) -> Check:
    props = {name: node(schema) for name, schema in value.items()}
    return lambda v: not isinstance(v, dict) or all(props[k](x) for k, x in v.items() if k in props)


def _additional(value: Any, sub: Mapping[str, Any], node: Callable[[Any], Check]) -> Check:
    if "patternProperties" in sub:
        raise UnsupportedSchema("additionalProperties with patternProperties")
    known = frozenset(sub.get("properties", {}))
    rest = node(value)
    return lambda v: not isinstance(v, dict) or all(rest(x) for k, x in v.items() if k not in known)


def _items(value: Any, sub: Mapping[str, Any], node: Callable[[Any], Check]) -> Check:
    if "prefixItems" in sub:
        raise UnsupportedSchema("items with prefixItems")
    each = node(value)
    return lambda v: not isinstance(v, list) or all(each(x) for x in v)


def _any_of(value: Any, sub: Mapping[str, Any], node: Callable[[Any], Check]) -> Check:
    options = [node(s) for s in value]
    return lambda v: any(o(v) for o in options)


def _not(value: Any, sub: Mapping[str, Any], node: Callable[[Any], Check]) -> Check:
    inner = node(value)
    return lambda v: not inner(v)


def _if(value: Any, sub: Mapping[str, Any], node: Callable[[Any], Check]) -> Check:
    condition = node(value)
    then = node(sub.get("then", True))
    otherwise = node(sub.get("else", True))
    return lambda v: then(v) if condition(v) else otherwise(v)


_NESTED: dict[str, Callable[[Any, Mapping[str, Any], Callable[[Any], Check]], Check]] = {
    "properties": _properties,
    "additionalProperties": _additional,
    "items": _items,
    "anyOf": _any_of,
    "not": _not,
    "if": _if,
}
