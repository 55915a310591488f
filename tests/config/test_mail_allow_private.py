"""``reporter.mail.allow_private``: the non-public networks direct delivery may send to."""

from __future__ import annotations

import ipaddress

import pytest

from tlsrpt_reporter.config import load as config
from tlsrpt_reporter.errors import ConfigError


def test_allow_private_takes_cidrs_and_defaults_to_none() -> None:
    table = {"allow_private": ["127.0.0.0/8", "fd00::/8"]}
    mail = config.parse({"reporter": {"mail": table}}).reporter.mail
    assert mail.allow_private == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert config.parse({"reporter": {"mail": {}}}).reporter.mail.allow_private == ()


@pytest.mark.parametrize("value", ["127.0.0.0/8", ["127.0.0.1/8"], ["localhost"], [8]])
def test_a_bad_allow_private_is_a_one_line_error_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"reporter\.mail\.allow_private\b") as info:
        config.parse({"reporter": {"mail": {"allow_private": value}}})
    assert "\n" not in str(info.value)
