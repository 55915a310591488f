"""The delivery keys of ``[reporter]`` (config.load): ``delivery_lanes``, ``attempt_deadline``
and ``max_destinations_per_host``, their defaults, and one-line errors naming the key for
values that mean nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tlsrpt_reporter.config.load import parse
from tlsrpt_reporter.errors import ConfigError


def test_the_defaults_bound_a_pass_without_asking_anything() -> None:
    reporter = parse({}).reporter
    assert reporter.delivery_lanes == 4
    assert reporter.attempt_deadline == 300.0
    assert reporter.max_destinations_per_host == 2


def test_the_keys_are_read() -> None:
    table = {"delivery_lanes": 8, "attempt_deadline": 45, "max_destinations_per_host": 1}
    reporter = parse({"reporter": table}).reporter
    assert (reporter.delivery_lanes, reporter.attempt_deadline) == (8, 45.0)
    assert reporter.max_destinations_per_host == 1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("attempt_deadline", float("nan")),
        ("attempt_deadline", float("inf")),
        ("attempt_deadline", 0),
        ("attempt_deadline", -5),
        ("attempt_deadline", "300"),
        ("attempt_deadline", 10**40),
        ("delivery_lanes", 0),
        ("delivery_lanes", 100_000),
        ("delivery_lanes", 2.5),
        ("delivery_lanes", True),
        ("max_destinations_per_host", 0),
        ("max_destinations_per_host", 10**20),
    ],
)
def test_a_value_that_means_nothing_is_refused_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"reporter": {key: value}})
    message = str(info.value)
    assert f"reporter.{key}" in message
    assert "\n" not in message
