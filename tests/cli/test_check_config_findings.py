"""Each check-config finding through the real commands, one line each, with the exit code of
cli/app.py (2 when something will not work): the socket's group, unreadable DKIM keys, a key
that does not match its record in DNS, a record without s=tlsrpt (and no such warning when a
second key carries it), a From outside the submitter's domain. ``tlsrpt-collectd
--check-config`` says the same about the collector's section."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.site import SUBMITTER, Site, dkim_key

from tlsrpt_reporter.deliver import dkim

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def run(*cmd: str, nobody: bool = False) -> subprocess.CompletedProcess[str]:
    if nobody and os.geteuid() != 0:
        pytest.fail("this test drops privileges with setpriv and must run as root (CI does)")
    prefix = NOBODY if nobody else []
    return subprocess.run([*prefix, sys.executable, *cmd], capture_output=True, text=True,
                          timeout=120, cwd="/")  # fmt: skip


def reporter_check(config: Path, nobody: bool = False) -> subprocess.CompletedProcess[str]:
    return run("-m", "tlsrpt_reporter.cli", "check-config", "--config", str(config), nobody=nobody)


def collector_check(config: Path) -> subprocess.CompletedProcess[str]:
    return run("-m", "tlsrpt_collectd.daemon", "--check-config", "--config", str(config))


def lines_with(result: subprocess.CompletedProcess[str], text: str) -> list[str]:
    """The lines naming ``text``: the reporter prints every finding on standard output, the
    collector those that will not work on standard error."""
    return [line for line in (result.stdout + result.stderr).splitlines() if text in line]


def collectd_config(directory: Path, extra: str = "") -> Path:
    config = directory / "collectd.toml"
    config.write_text(f'[collectd]\nsocket = "{directory}/s.sock"\ndb = "{directory}/c.sqlite"\n'
                      f"{extra}")  # fmt: skip
    return config


# --- the socket's group -------------------------------------------------------------------


def test_an_unset_socket_group_is_flagged_by_both_commands(tmp_path: Path) -> None:
    config = collectd_config(tmp_path)
    for result in (collector_check(config), reporter_check(config)):
        (line,) = lines_with(result, "collectd.socket_group")
        assert line.startswith("warning  collecting: collectd.socket_group is not set: the socket")
        assert "(root:root when run as this user) with mode 0660" in line
        assert line.endswith(
            'Postfix\'s smtp(8) (user postfix) cannot write to: set socket_group = "postfix" '
            "(when systemd passes the socket, its unit decides this instead)"
        )
    # Only a warning: a unit that passes the socket (systemd) makes it work all the same.
    assert collector_check(config).returncode == 0


def test_a_world_writable_socket_needs_no_group(tmp_path: Path) -> None:
    result = collector_check(collectd_config(tmp_path, 'socket_mode = "0666"\n'))
    assert result.returncode == 0
    assert "ok       collecting: socket mode 0666 lets every local user write" in result.stdout
    assert "configuration OK" in result.stdout


def test_an_existing_socket_group_is_ok(tmp_path: Path) -> None:
    result = collector_check(collectd_config(tmp_path, 'socket_group = "root"\n'))
    assert result.returncode == 0
    assert lines_with(result, "socket group") == [
        "ok       collecting: socket group root (gid 0), mode 0660"
    ]


def test_an_unknown_socket_group_fails_both_commands_in_one_line(tmp_path: Path) -> None:
    config = collectd_config(tmp_path, 'socket_group = "no-such-group-here"\n')
    for result in (collector_check(config), reporter_check(config)):
        assert result.returncode == 2
        assert lines_with(result, "no-such-group-here") == [
            "error    collecting: collectd.socket_group 'no-such-group-here' does not exist on "
            "this host: create the group or fix it"
        ]
    assert "no-such-group-here" in collector_check(config).stderr


def test_an_unknown_allowed_user_fails_the_collector_check(tmp_path: Path) -> None:
    result = collector_check(collectd_config(tmp_path, 'allowed_users = ["nosuchuser", 0]\n'))
    assert result.returncode == 2
    assert lines_with(result, "allowed_users") == [
        "error    collecting: collectd.allowed_users: there is no user 'nosuchuser' on this "
        "host: create it, fix the name, or give the numeric id"
    ]


# --- the DKIM keys --------------------------------------------------------------------------


def with_keys(site: Site, keys: list[tuple[str, Path]], from_addr: str = "") -> Path:
    """The site's configuration with these (selector, key file) tables instead of its own, and
    no record in the file: check-config asks the DNS test server."""
    tables = "".join(
        f'[[reporter.mail.dkim]]\ndomain = "{SUBMITTER}"\nselector = "{selector}"\nkey = "{key}"\n'
        for selector, key in keys
    )
    text = re.sub(r"\[\[reporter\.mail\.dkim\]\]\n(?:\w+ = .*\n)+", tables, site.config.read_text())
    if from_addr:
        text = re.sub(r'from = "[^"]*"', f'from = "{from_addr}"', text)
    config = site.tmp / "checked.toml"
    config.write_text(text)
    return config


def new_key(site: Site, name: str, directory: Path | None = None) -> tuple[Path, dkim.LoadedKey]:
    where = (directory or site.tmp) / name
    where.mkdir()
    pem, _ = dkim_key(where, SUBMITTER)
    return pem, dkim.load_key(dkim.DkimKey(SUBMITTER, name, pem))


def publish(site: Site, selector: str, record: str) -> None:
    chunks = " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))
    site.dns.zone[f"{selector}._domainkey.{SUBMITTER}"] = [("TXT", chunks)]


def test_a_record_in_dns_that_does_not_match_the_key_is_an_error(site: Site) -> None:
    pem, _ = new_key(site, "tlsrpt")
    _, other = new_key(site, "other")
    publish(site, "tlsrpt", dkim.record_for(other))
    result = reporter_check(with_keys(site, [("tlsrpt", pem)]))
    assert result.returncode == 2
    (line,) = lines_with(result, "does not match")
    assert line.startswith(f"error    DKIM tlsrpt._domainkey.{SUBMITTER}: the private key in {pem}")


def test_a_key_without_a_record_in_dns_is_an_error(site: Site) -> None:
    pem, _ = new_key(site, "tlsrpt")
    result = reporter_check(with_keys(site, [("tlsrpt", pem)]))
    assert result.returncode == 2
    (line,) = lines_with(result, "no record text")
    assert line.startswith(f"error    DKIM tlsrpt._domainkey.{SUBMITTER}: no record text for ")


def test_a_record_in_dns_without_s_tlsrpt_is_warned_about(site: Site) -> None:
    pem, key = new_key(site, "mail")
    publish(site, "mail", dkim.record_for(key, tlsrpt=False))
    result = reporter_check(with_keys(site, [("mail", pem)]))
    assert result.returncode == 0, result.stdout
    (line,) = lines_with(result, f"DKIM mail._domainkey.{SUBMITTER}")
    assert line.startswith("warning  ") and "the record lacks s=tlsrpt" in line
    (coverage,) = lines_with(result, "no working DKIM key with an s=tlsrpt record")
    assert coverage.startswith("warning  DKIM: ")


def test_no_s_tlsrpt_warning_when_the_second_key_carries_it(site: Site) -> None:
    """The reported false warning: with an s=tlsrpt key and the domain's usual key both
    configured, check-config said the usual key's record lacks s=tlsrpt, and (with the s=tlsrpt
    record in DNS, not in the file) that no key had an s=tlsrpt record."""
    report_pem, report_key = new_key(site, "tlsrpt")
    usual_pem, usual_key = new_key(site, "mail")
    publish(site, "tlsrpt", dkim.record_for(report_key))
    publish(site, "mail", dkim.record_for(usual_key, tlsrpt=False))
    result = reporter_check(with_keys(site, [("tlsrpt", report_pem), ("mail", usual_pem)]))
    assert result.returncode == 0, result.stdout
    dkim_lines = lines_with(result, "DKIM")
    assert [line.split()[0] for line in dkim_lines] == ["ok", "ok", "ok"], dkim_lines
    assert dkim_lines[0] == (
        f"ok       DKIM tlsrpt._domainkey.{SUBMITTER}: the key matches and the record has s=tlsrpt"
    )
    assert "the DMARC-aligned signature beside the s=tlsrpt one" in dkim_lines[1]
    assert not lines_with(result, "lacks s=tlsrpt")
    assert not lines_with(result, "no working DKIM key")
    queried = {q.name for q in site.dns.queries}
    assert {f"tlsrpt._domainkey.{SUBMITTER}", f"mail._domainkey.{SUBMITTER}"} <= queried


def test_send_judges_the_keys_as_a_set_too(site: Site) -> None:
    """``send`` checks its keys at start-up: with the usual key beside an s=tlsrpt one it must
    not warn that the usual key's record lacks s=tlsrpt, and it warns when none carries it."""
    report_pem, report_key = new_key(site, "tlsrpt")
    usual_pem, usual_key = new_key(site, "mail")
    publish(site, "tlsrpt", dkim.record_for(report_key))
    publish(site, "mail", dkim.record_for(usual_key, tlsrpt=False))
    config = with_keys(site, [("tlsrpt", report_pem), ("mail", usual_pem)])
    both = run("-m", "tlsrpt_reporter.cli", "send", "--config", str(config))
    assert "DKIM key" not in both.stderr, both.stderr
    alone = with_keys(site, [("mail", usual_pem)])
    one = run("-m", "tlsrpt_reporter.cli", "send", "--config", str(alone))
    assert f"DKIM key mail._domainkey.{SUBMITTER}" in one.stderr, one.stderr


def test_an_unreadable_key_is_one_line_and_the_other_keys_are_still_checked(
    site: Site, shared_dir: Path
) -> None:
    locked_pem, _ = new_key(site, "tlsrpt", shared_dir)
    open_pem, open_key = new_key(site, "mail", shared_dir)
    locked_pem.chmod(0o600)  # root's: nobody may not read it
    open_pem.chmod(0o644)
    for directory in (locked_pem.parent, open_pem.parent):
        directory.chmod(0o755)
    publish(site, "mail", dkim.record_for(open_key, tlsrpt=False))
    config = shared_dir / "config.toml"
    config.write_text(with_keys(site, [("tlsrpt", locked_pem), ("mail", open_pem)]).read_text())
    config.chmod(0o644)
    result = reporter_check(config, nobody=True)
    assert result.returncode == 2
    (line,) = lines_with(result, str(locked_pem))
    assert line == (
        f"error    DKIM: DKIM key file {locked_pem} (selector tlsrpt, domain {SUBMITTER}) cannot "
        "be read by this user: make it readable by the reporter's user"
    )
    (other,) = lines_with(result, f"DKIM mail._domainkey.{SUBMITTER}")
    assert "the key matches" in other


# --- who the mail comes from ----------------------------------------------------------------


def test_a_from_outside_the_submitters_domain_is_flagged(site: Site) -> None:
    config = site.tmp / "from.toml"
    config.write_text(re.sub(r'from = "[^"]*"', 'from = "reports@other.example"',
                             site.config.read_text()))  # fmt: skip
    result = reporter_check(config)
    (line,) = lines_with(result, "reporter.mail.from")
    assert line == (
        f"warning  sending: reporter.mail.from reports@other.example is not in the domain of the "
        f"submitter {SUBMITTER} (reporter.contact_info): the submitter's signature is not "
        "DMARC-aligned with From, so the reports need a second signature by other.example; use "
        f"an address @{SUBMITTER}"
    )


def test_with_the_relay_signing_a_from_outside_the_submitters_domain_is_an_error(
    site: Site,
) -> None:
    text = re.sub(r"\[\[reporter\.mail\.dkim\]\]\n(?:\w+ = .*\n)+", "", site.config.read_text())
    text = re.sub(r'from = "[^"]*"', 'from = "reports@other.example"\nsign_by = "relay"', text)
    config = site.tmp / "relay.toml"
    config.write_text(text)
    result = reporter_check(config)
    assert result.returncode == 2
    (line,) = lines_with(result, "reporter.mail.from")
    assert line.startswith("error    sending: reporter.mail.from reports@other.example")
    assert "the relay signs as the From domain, so no signature is the submitter's" in line
