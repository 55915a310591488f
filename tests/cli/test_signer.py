"""The submitter is the signer (RFC 8460 §5.3): ``check-config``, ``send`` and ``run`` refuse a
configuration in which no DKIM key signs as the domain of ``contact_info`` (or its
organisational domain) and name the keys they saw; other keys only get a warning. The real CLI
on the site's servers."""

from __future__ import annotations

import email
from pathlib import Path

from support.site import SUBMITTER, Site

KEY_DOMAIN = f'domain = "{SUBMITTER}"'


def _variant(site: Site, name: str, old: str, new: str) -> Path:
    text = site.config.read_text()
    assert text.count(old) == 1, old
    config = site.tmp / f"{name}.toml"
    config.write_text(text.replace(old, new))
    return config


def test_no_key_of_the_submitter_means_nothing_is_sent_and_the_keys_seen_are_named(
    site: Site,
) -> None:
    config = _variant(site, "foreign", KEY_DOMAIN, 'domain = "other.example"')
    checked = site.cli("check-config", config=config)
    assert checked.returncode == 2
    (line,) = [x for x in checked.stdout.splitlines() if "signs as the submitter" in x]
    assert line.startswith("error")
    assert f"submitter {SUBMITTER}" in line and "keys seen: d=other.example s=tlsrpt" in line
    for command in (("send", "--now"), ("run",)):
        refused = site.cli(*command, config=config)
        assert refused.returncode == 2, command
        assert "refusing to send" in refused.stderr
        assert "keys seen: d=other.example s=tlsrpt" in refused.stderr
    assert site.smtp.messages == [] and site.web.requests == []
    assert not site.reporter_db.exists(), "refused before anything was built"


def test_a_key_of_the_organisational_domain_signs_for_a_submitter_below_it(site: Site) -> None:
    config = _variant(
        site, "sub", f'contact_info = "tlsrpt@{SUBMITTER}"',
        f'contact_info = "tlsrpt@reports.{SUBMITTER}"',
    )  # fmt: skip
    checked = site.cli("check-config", config=config)
    assert checked.returncode == 0, checked.stdout
    assert f"ok       DKIM: d={SUBMITTER} s=tlsrpt signs as the submitter reports." in (
        checked.stdout
    )
    sent = site.cli("send", "--now", config=config)
    assert sent.returncode == 0, sent.stderr
    mail = email.message_from_bytes(site.smtp.messages[0].data)
    assert mail["TLS-Report-Submitter"] == f"reports.{SUBMITTER}"
    assert f"d={SUBMITTER}" in mail["DKIM-Signature"].replace(" ", "")


def test_another_key_besides_the_submitters_is_only_a_warning(site: Site) -> None:
    text = site.config.read_text()
    table = text[text.index("[[reporter.mail.dkim]]") : text.index("[reporter.https]")]
    extra = table.replace(KEY_DOMAIN, 'domain = "other.example"').replace(
        'selector = "tlsrpt"', 'selector = "extra"'
    )
    config = site.tmp / "extra.toml"
    config.write_text(text.replace("[reporter.https]", f"{extra}[reporter.https]"))
    checked = site.cli("check-config", config=config)
    warning = "DKIM: the key d=other.example s=extra does not sign as the submitter example.net"
    assert f"warning  {warning}" in checked.stdout
    assert "error" not in checked.stdout.split()
    sent = site.cli("send", "--now", config=config)
    assert sent.returncode == 0, sent.stderr
    assert warning in sent.stderr
    assert len(site.smtp.messages) == 2


def test_an_internationalised_contact_info_fails_check_config_before_anything_is_built(
    site: Site,
) -> None:
    config = _variant(
        site, "idn", f'contact_info = "tlsrpt@{SUBMITTER}"', 'contact_info = "tlsrpt@exämple.net"'
    )
    checked = site.cli("check-config", config=config)
    assert checked.returncode == 2
    assert "write it as tlsrpt@xn--exmple-cua.net" in checked.stdout
    for command in (("send", "--now"), ("build", "--day", "2026-03-01", "--out", "out")):
        refused = site.cli(*command, config=config)
        assert refused.returncode == 2, command
        assert "xn--exmple-cua.net" in refused.stderr
    assert site.smtp.messages == [] and not site.reporter_db.exists()


def test_without_any_key_sending_stays_refused_as_missing(site: Site) -> None:
    # A relay that signs (sign-by-relay) is no way out: RFC 8460 §5.3 asks this sender to sign.
    text = site.config.read_text()
    table = text[text.index("[[reporter.mail.dkim]]") : text.index("[reporter.https]")]
    config = site.tmp / "unsigned.toml"
    config.write_text(text.replace(table, ""))
    refused = site.cli("send", "--now", config=config)
    assert refused.returncode == 2
    assert "[[reporter.mail.dkim]] (at least one key, or sign_by" in refused.stderr
    checked = site.cli("check-config", config=config)
    assert "signs as the submitter" not in checked.stdout
    assert "missing  sending: [[reporter.mail.dkim]]" in checked.stdout
