"""Who the reports come from (config.identity): the submitter of contact_info must sign the
report mails (RFC 8460 §5.3), its domain must be one a report can carry, and the instance id
that keeps Report-IDs apart (RFC 8460 §4.4) is letters and digits."""

from __future__ import annotations

import pytest
from support.lines import DAY, line

from tlsrpt_reporter.config import identity
from tlsrpt_reporter.config.load import parse
from tlsrpt_reporter.config.schema import DkimConfig, MailConfig, ReporterConfig
from tlsrpt_reporter.errors import ConfigError
from tlsrpt_reporter.report import document as report


def _cfg(contact_info: str, *key_domains: str) -> ReporterConfig:
    keys = tuple(DkimConfig(d, f"s{i}", "/etc/k.pem") for i, d in enumerate(key_domains))
    mail = MailConfig(from_addr="tlsrpt@example.net", dkim=keys)
    return ReporterConfig(organization_name="Org", contact_info=contact_info, mail=mail)


def _signers(contact_info: str, *key_domains: str) -> identity.Signers:
    found = identity.signers(_cfg(contact_info, *key_domains))
    assert found is not None
    return found


def test_a_key_of_the_submitter_or_of_its_organisational_domain_signs_as_it() -> None:
    exact = _signers("tlsrpt@example.net", "example.net")
    assert (exact.problem, exact.warnings()) == ("", [])
    parent = _signers("tlsrpt@reports.example.co.uk", "example.co.uk")
    assert parent.submitter == "reports.example.co.uk"
    assert parent.organizational == "example.co.uk"
    assert parent.problem == ""
    assert _signers("tlsrpt@Reports.Example.NET", "example.net").problem == ""


@pytest.mark.parametrize(
    ("contact_info", "key_domain"),
    [
        ("tlsrpt@reports.example.co.uk", "co.uk"),  # a public suffix is nobody's organisation
        ("tlsrpt@reports.example.co.uk", "mail.example.co.uk"),  # a sibling signs as itself
        ("tlsrpt@example.net", "example.org"),
        ("tlsrpt@example.net", "mail.example.net"),  # a child is not the submitter
        ("tlsrpt@me.github.io", "github.io"),  # the list's private section counts too
    ],
)
def test_any_other_domain_does_not_sign_as_the_submitter(
    contact_info: str, key_domain: str
) -> None:
    assert _signers(contact_info, key_domain).problem


def test_without_a_key_of_the_submitter_the_problem_names_every_key_seen() -> None:
    problem = _signers("tlsrpt@mail.example.com", "example.org", "other.example").problem
    assert "submitter mail.example.com" in problem
    assert "organisational domain example.com" in problem
    assert "keys seen: d=example.org s=s0, d=other.example s=s1" in problem
    assert "RFC 8460 §5.3" in problem


def test_other_keys_only_warn_once_one_signs_as_the_submitter() -> None:
    found = _signers("tlsrpt@example.net", "example.net", "example.org")
    assert found.problem == ""
    (warning,) = found.warnings()
    assert "d=example.org s=s1 does not sign as the submitter example.net" in warning
    assert "d=example.net s=s0" in warning


def test_no_key_or_no_contact_info_is_left_to_the_missing_check() -> None:
    # Sign-by-relay setups have no key: sending is refused as "missing", not here.
    assert identity.signers(_cfg("tlsrpt@example.net")) is None
    assert identity.signers(_cfg("", "example.net")) is None
    assert '[[reporter.mail.dkim]] (at least one key, or sign_by = "relay")' in (
        _cfg("a@example.net").missing_identity()
    )


@pytest.mark.parametrize(
    ("contact_info", "message"),
    [
        ("tlsrpt@exämple.net", "write it as tlsrpt@xn--exmple-cua.net"),
        ("tlsrpt@example.net.", "write it as tlsrpt@example.net"),
        ("tlsrpt@_tls.example.net", "letters, digits and hyphens"),
        ("tlsrpt@localhost", "at least two labels"),
    ],
)
def test_a_contact_info_a_report_cannot_carry_is_refused_when_read_and_when_built(
    contact_info: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"reporter\.contact_info") as info:
        parse({"reporter": {"contact_info": contact_info}})
    assert message in str(info.value)
    # Building refuses the same values with the same words: nothing is set aside one by one.
    with pytest.raises(ConfigError) as built:
        report.build(DAY, "example.com", [line()], report.Identity("Org", contact_info))
    assert message in str(built.value)


@pytest.mark.parametrize(
    "contact_info", ["tlsrpt@Example.NET", "tlsrpt@xn--exmple-cua.net", "ü@example.net"]
)
def test_a_contact_info_a_report_carries_as_written_is_taken(contact_info: str) -> None:
    assert parse({"reporter": {"contact_info": contact_info}}).reporter.contact_info == contact_info


def test_instance_id_is_letters_and_digits() -> None:
    assert parse({"reporter": {"instance_id": "mx2B"}}).reporter.instance_id == "mx2B"
    assert parse({}).reporter.instance_id == ""
    for bad in ("", "mx-2", "mx.2", "ü1", "x" * 33, 7):
        with pytest.raises(ConfigError, match=r"reporter\.instance_id must be 1 to 32"):
            parse({"reporter": {"instance_id": bad}})
