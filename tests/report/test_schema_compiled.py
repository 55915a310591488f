"""The compiled schema check says what jsonschema says (issue 15: a day of 100,000 reports is
checked in seconds). Differential: real reports, and every one of them broken at every place in
every way, each judged by both."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from support.lines import DAY, ME

from tlsrpt_reporter.demo.samplegen import sessions
from tlsrpt_reporter.report import document as report
from tlsrpt_reporter.report import schema
from tlsrpt_reporter.report.schema_compiled import UnsupportedSchema, compile_schema
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode

# What a broken builder or a hostile source could put anywhere.
ALIENS: list[Any] = [
    None, True, False, 0, -1, 1.0, 1.5, 2**53, "", "x", "192.0.2.1", "::1", "fe80::1%eth0",
    "example.com", "sts", "tlsa", "starttls-not-supported", [], ["x"], [""], {}, {"a": 1},
]  # fmt: skip


def _documents(tmp_path: Any) -> list[dict[str, Any]]:
    """Reports of a generated day: every policy type, MX hosts, failure details with IPv4 and
    IPv6 addresses; one of each shape."""
    agg = Aggregate()
    for raw in sessions(3, 60, 1500):
        agg.add(DAY, 1.0, decode(raw))
    conn = store.connect(tmp_path / "c.sqlite")
    store.write(conn, store.build_batch(agg))
    lines = list(store.iter_day(conn, DAY))
    conn.close()
    docs = [report.build(DAY, d, lines, ME).document for d in report.domains_of(lines, DAY)]
    hosts = report.mx_host_lines(lines, DAY)
    docs += [report.build(DAY, h, hl, ME).document for h, hl in list(hosts.items())[:5]]
    shapes: dict[str, dict[str, Any]] = {}
    for doc in docs:
        for policy in doc["policies"]:
            # Two details show every rule on details; more would only repeat them.
            if "failure-details" in policy:
                policy["failure-details"] = policy["failure-details"][:2]
        key = ",".join(sorted({p["policy"]["policy-type"] for p in doc["policies"]}))
        key += "+details" if any("failure-details" in p for p in doc["policies"]) else ""
        shapes.setdefault(key, doc)
    return list(shapes.values())


def _places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _places(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _places(inner, (*path, index))


def _broken(doc: dict[str, Any]) -> Iterator[Any]:
    """``doc`` with one thing changed: each value replaced by each alien, each key removed,
    an unknown key added to each object, each array emptied or an item doubled."""
    for path in _places(doc):
        for alien in ALIENS:
            if path:
                copied = copy.deepcopy(doc)
                _at(copied, path[:-1])[path[-1]] = alien
                yield copied
        target = _at(doc, path)
        if isinstance(target, dict):
            for key in target:
                copied = copy.deepcopy(doc)
                del _at(copied, path)[key]
                yield copied
            copied = copy.deepcopy(doc)
            _at(copied, path)["unknown"] = "x"
            yield copied
        if isinstance(target, list) and target:
            copied = copy.deepcopy(doc)
            _at(copied, path).clear()
            yield copied
            copied = copy.deepcopy(doc)
            _at(copied, path).append(copy.deepcopy(target[0]))
            yield copied


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def test_the_compiled_check_agrees_with_jsonschema_on_every_broken_report(tmp_path: Any) -> None:
    validator = schema._validator()
    check = compile_schema(schema._schema(), FormatChecker())
    docs = _documents(tmp_path)
    assert len(docs) >= 5
    judged = rejected = 0
    for doc in docs:
        assert check(doc) and validator.is_valid(doc)
        for broken in _broken(doc):
            expected = validator.is_valid(broken)
            assert check(broken) == expected, broken
            judged += 1
            rejected += not expected
    assert rejected > judged // 2, "most changes break a report: the test reaches the rules"


@pytest.mark.parametrize(
    ("subschema", "instances"),
    [
        ({"type": "integer"}, [1, 1.0, 1.5, True, "1", None]),
        ({"type": "number", "minimum": 0, "maximum": 10}, [0, -1, 10, 10.5, False, "5"]),
        ({"type": ["string", "null"]}, ["", None, 0]),
        ({"enum": ["a", "b"]}, ["a", "c", 1, None]),
        ({"minLength": 2, "maxLength": 3}, ["é", "éé", "éééé", 7, ["a"]]),
        ({"pattern": "b+"}, ["abba", "a", 3]),
        ({"minItems": 1, "maxItems": 2, "items": {"type": "string"}}, [[], ["a"], [1], "ab"]),
        ({"required": ["a"], "properties": {"a": {"type": "string"}}}, [{"a": "x"}, {}, {"a": 1}]),
        ({"properties": {"a": True}, "additionalProperties": False}, [{"a": 1}, {"b": 1}, []]),
        ({"additionalProperties": {"type": "integer"}}, [{"x": 1}, {"x": "1"}]),
        ({"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
         ["192.0.2.1", "2001:db8::1", "fe80::1%eth0", "1.2.3", 5]),
        ({"not": {"type": "string"}}, ["a", 1]),
        ({"if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"required": ["c"]}},
         [{"a": 1, "b": 1}, {"a": 1}, {"c": 1}, {}]),
        ({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
          "$ref": "#/$defs/n"}, [{"next": {"next": {}}}, {"next": {"next": 1}}]),
    ],
)  # fmt: skip
def test_each_keyword_means_what_jsonschema_makes_it_mean(
    subschema: dict[str, Any], instances: list[Any]
) -> None:
    check = compile_schema(subschema, FormatChecker())
    validator = Draft202012Validator(subschema, format_checker=FormatChecker())
    for instance in instances:
        assert check(instance) == validator.is_valid(instance), instance


@pytest.mark.parametrize(
    "subschema",
    [{"uniqueItems": True}, {"$ref": "other.json#/x"}, {"enum": [1, True]},
     {"patternProperties": {"a": {}}, "additionalProperties": False}],
)  # fmt: skip
def test_a_schema_it_cannot_check_exactly_is_refused(subschema: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedSchema):
        compile_schema(subschema, FormatChecker())


def test_the_shipped_schema_is_compiled() -> None:
    assert schema._fast_check() is not None, "validate would fall back to jsonschema alone"
