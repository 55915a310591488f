"""Debian 13's real Postfix 3.10 with libtlsrpt 0.5.0rc1 feeds our collector; our reporter
builds and delivers the day's reports (see tests/rigs/postfix310.py for the set-up).

The scenario runs once per module in a network namespace of its own (``unshare --net``) and
leaves what it saw in a directory; each test checks one row of what Postfix 3.10.13 emits, or
one step of the path: datagrams -> collector -> ``export`` -> built report (DKIM verified) ->
delivery by mail through that Postfix and by HTTPS POST.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
from rigs import trixie
from support.paths import TESTS

from tlsrpt_reporter.report import schema

SUBMITTER = "rig-sender.test"
_RUN_TIMEOUT = 600


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the Postfix 3.10 rig needs root (chroot, a network namespace, port 25)"
    for tool in ("/usr/bin/unshare", "/usr/sbin/chroot", "/usr/bin/setpriv"):
        if not Path(tool).exists():
            return f"{tool} is missing (util-linux / coreutils)"
    try:
        trixie.ensure_root()
    except Exception as exc:  # RootUnavailable, or debootstrap itself failing
        return f"no Debian 13 root with Postfix 3.10: {exc}"
    return None


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Run the scenario once; the result.json it wrote, with the run's directory."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the Postfix 3.10 rig must run in CI: {reason}")
        pytest.skip(f"Postfix 3.10 rig cannot run here: {reason}")
    out = tmp_path_factory.mktemp("postfix310")
    started = time.monotonic()
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    }
    done = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-m", "rigs.postfix310", str(out / "run")],
        cwd=TESTS, env=env, capture_output=True, text=True, timeout=_RUN_TIMEOUT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        logs = ""
        for name in ("collectd.log", "postfix.log"):
            path = out / "run" / name
            if path.exists():
                logs += f"\n--- {name} ---\n" + path.read_text(errors="replace")[-4000:]
        pytest.fail(f"the rig failed ({done.returncode}):\n{done.stdout}\n{done.stderr}{logs}")
    result: dict[str, Any] = json.loads((out / "run" / "result.json").read_text())
    result["dir"] = out / "run"
    # The versions and the time it took, in the test run's own output (not captured).
    line = (
        f"Postfix 3.10 rig: {result['versions']}, net.unix.max_dgram_qlen "
        f"{result['namespace']['max_dgram_qlen']}, ran in {time.monotonic() - started:.1f} s"
    )
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{line}")
    return result


def _lines(rig: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["domain"]: line for line in rig["export"]}


def _policy_and_details(line: dict[str, Any]) -> tuple[str, str, int, int, list[Any]]:
    policy = line["policy"]
    summary = line["summary"]
    details = sorted(
        (d["result-type"], d.get("failure-reason-code", ""), d["failed-session-count"])
        for d in line["failure-details"]
    )
    return (
        policy["policy-type"],
        policy["policy-domain"],
        summary["total-successful-session-count"],
        summary["total-failure-session-count"],
        details,
    )


def test_the_rig_ran_debian_13_postfix_3_10_with_libtlsrpt_0_5_0rc1(rig: dict[str, Any]) -> None:
    assert rig["versions"]["postfix"].startswith("3.10.")
    assert rig["versions"]["libtlsrpt0"].startswith("0.5.0")
    assert rig["namespace"]["max_dgram_qlen"] == "512"


def test_tlsa_matching_the_certificate_is_a_dane_success(rig: dict[str, Any]) -> None:
    line = _lines(rig)["a-dane-ok.test"]
    assert _policy_and_details(line) == ("tlsa", "mx.a-dane-ok.test", 1, 0, [])
    assert rig["statuses"]["a-dane-ok.test"] == ["sent"]


def test_tlsa_matching_no_certificate_is_certificate_not_trusted(rig: dict[str, Any]) -> None:
    line = _lines(rig)["b-dane-mismatch.test"]
    # Postfix 3.10.13 gives 203 with no reason code (OpenSSL's "no matching DANE TLSA
    # records" is not mapped to validation-failure).
    assert _policy_and_details(line) == (
        "tlsa", "mx.b-dane-mismatch.test", 0, 1, [("certificate-not-trusted", "", 1)],
    )  # fmt: skip


def test_unusable_tlsa_records_are_tlsa_invalid(rig: dict[str, Any]) -> None:
    line = _lines(rig)["c-dane-unusable.test"]
    assert _policy_and_details(line) == (
        "tlsa", "mx.c-dane-unusable.test", 0, 1,
        [("tlsa-invalid", "all-TLSA-records-unusable", 1)],
    )  # fmt: skip


def test_tlsa_records_postfix_discards_leave_no_policy_found(rig: dict[str, Any]) -> None:
    line = _lines(rig)["c2-dane-dropped.test"]
    assert _policy_and_details(line) == ("no-policy-found", "c2-dane-dropped.test", 1, 0, [])


def test_dane_mx_without_starttls_is_starttls_not_supported(rig: dict[str, Any]) -> None:
    line = _lines(rig)["d-dane-nostarttls.test"]
    assert _policy_and_details(line) == (
        "tlsa", "mx.d-dane-nostarttls.test", 0, 1, [("starttls-not-supported", "", 1)],
    )  # fmt: skip
    assert rig["statuses"]["d-dane-nostarttls.test"] == ["deferred"]


def test_no_tlsa_with_starttls_is_no_policy_found_success(rig: dict[str, Any]) -> None:
    line = _lines(rig)["e-notlsa.test"]
    assert _policy_and_details(line) == ("no-policy-found", "e-notlsa.test", 1, 0, [])


@pytest.mark.parametrize(
    "domain",
    ["f-norecord.test", "g-tls-required-no.test", "h-notlsa-nostarttls.test"],
)
def test_cases_postfix_does_not_report_send_nothing(rig: dict[str, Any], domain: str) -> None:
    # No _smtp._tls record; the TLS-Required: No header; no TLSA and no STARTTLS (plaintext
    # without a policy). Each message was still handled, but no datagram came.
    assert rig["statuses"][domain] == ["sent"]
    assert domain not in _lines(rig)


def test_every_datagram_came_in_the_no_dpv_form_and_was_stored(rig: dict[str, Any]) -> None:
    counters = rig["counters_after_sessions"]
    # Six table rows emit, plus the rua domain's own control message.
    assert counters["wire-form:no-dpv"] == counters["sessions"] == 7
    assert counters.get("wire-form:dpv-1", 0) == 0
    assert set(_lines(rig)) == {
        "a-dane-ok.test", "b-dane-mismatch.test", "c-dane-unusable.test",
        "c2-dane-dropped.test", "d-dane-nostarttls.test", "e-notlsa.test", "reports.test",
    }  # fmt: skip


def test_the_whole_ehlo_reply_postfix_sent_is_stored_as_the_announced_name(
    rig: dict[str, Any],
) -> None:
    # Postfix puts the pre-STARTTLS EHLO reply, all lines, into the datagram's "h".
    detail = _lines(rig)["b-dane-mismatch.test"]["failure-details"][0]
    assert detail["receiving-mx-helo"] == "mx.b-dane-mismatch.test"
    assert detail["receiving-ip"] == "127.0.0.12"
    assert detail["receiving-mx-hostname"] == "mx.b-dane-mismatch.test"


def test_socket_group_is_postfixs_numeric_gid_and_only_postfix_may_write(
    rig: dict[str, Any],
) -> None:
    assert rig["socket"] == {"mode": "0o660", "gid": rig["postfix_ids"]["gid"]}
    counters = rig["counters_after_sessions"]
    # Postfix's chrooted smtp processes (uid postfix) were accepted; nobody, although in the
    # socket's group, was refused by allowed_users and counted.
    assert counters["rejected:sender-not-allowed"] == 1
    assert counters["accepted"] == 7


def _verify(raw: bytes, record: str) -> bool:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"tlsrpt._domainkey.{SUBMITTER}.".encode()
        return record.encode()

    return bool(dkimpy.verify(raw, dnsfunc=dnsfunc, tlsrpt="strict"))


def _report_of(raw: bytes) -> tuple[str, dict[str, Any]]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    attachment = list(msg.iter_parts())[1]
    payload = attachment.get_content()
    return str(msg["TLS-Report-Domain"]), json.loads(gzip.decompress(payload))


def test_built_reports_are_signed_valid_and_say_what_postfix_saw(rig: dict[str, Any]) -> None:
    built = Path(rig["built_dir"])
    reports = {}
    for path in built.glob("*.eml"):
        raw = path.read_bytes()
        assert _verify(raw, rig["dkim_record"]), path.name
        domain, report = _report_of(raw)
        schema.validate(report)
        reports[domain] = report
    mismatch = reports["b-dane-mismatch.test"]["policies"][0]
    assert mismatch["policy"] == {
        "policy-type": "tlsa",
        "policy-string": [_lines(rig)["b-dane-mismatch.test"]["policy"]["policy-string"][0]],
        "policy-domain": "mx.b-dane-mismatch.test",
    }
    assert mismatch["summary"]["total-failure-session-count"] == 1
    detail = mismatch["failure-details"][0]
    assert detail["result-type"] == "certificate-not-trusted"
    assert detail["receiving-ip"] == "127.0.0.12"
    assert detail["receiving-mx-helo"] == "mx.b-dane-mismatch.test"


def _received(rig: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(rig["received_dir"]).glob("*.eml")):
        raw = path.read_bytes()
        if b"TLS-Report-Domain" not in raw:
            continue  # the rua domain's own control message
        assert _verify(raw, rig["dkim_record"]), path.name
        domain, report = _report_of(raw)
        schema.validate(report)
        found.setdefault(domain, []).append(report)
    return found


def test_reports_went_out_through_postfix_to_the_rua_domain(rig: dict[str, Any]) -> None:
    received = _received(rig)
    # Every domain with a mailto rua got exactly one report; e-notlsa.test's went by HTTPS.
    assert sorted(received) == [
        "a-dane-ok.test", "b-dane-mismatch.test", "c-dane-unusable.test",
        "c2-dane-dropped.test", "d-dane-nostarttls.test", "mx.a-dane-ok.test", "reports.test",
    ]  # fmt: skip
    assert all(len(reports) == 1 for reports in received.values())
    unusable = received["c-dane-unusable.test"][0]["policies"][0]
    assert unusable["failure-details"][0]["result-type"] == "tlsa-invalid"
    assert set(rig["report_mail_statuses"]) == {"sent"}
    assert not rig["delivery"]["problems"]


def test_report_mail_through_postfix_yields_no_datagram(rig: dict[str, Any]) -> None:
    # The reporter sets TLS-Required: No (RFC 8689), so Postfix does not report the sessions
    # that deliver reports, though reports.test publishes _smtp._tls and a matching TLSA
    # record (its control message above did emit a datagram): no report loop.
    before, after = rig["counters_before_reports"], rig["counters_after_reports"]
    assert before["received"] == after["received"] == rig["counters_final"]["received"]
    assert after["sessions"] == 7


def test_https_rua_received_its_report_by_post(rig: dict[str, Any]) -> None:
    assert len(rig["posts"]) == 1
    post = rig["posts"][0]
    assert post["content_type"] == "application/tlsrpt+gzip"
    report = json.loads(gzip.decompress(Path(post["path"]).read_bytes()))
    schema.validate(report)
    policy = report["policies"][0]
    assert policy["policy"]["policy-domain"] == "e-notlsa.test"
    assert policy["summary"]["total-successful-session-count"] == 1


def test_the_mx_host_publishing_a_record_gets_a_host_report_of_its_dane_policies(
    rig: dict[str, Any],
) -> None:
    # RFC 8460 §1.1: the TLSA base domain is the DANE policy's domain. mx.a-dane-ok.test
    # publishes _smtp._tls; the other MX hosts publish nothing and get no report.
    received = _received(rig)
    host = received["mx.a-dane-ok.test"][0]
    assert [p["policy"]["policy-type"] for p in host["policies"]] == ["tlsa"]
    assert host["policies"][0]["policy"]["policy-domain"] == "mx.a-dane-ok.test"
    assert host["policies"][0]["summary"]["total-successful-session-count"] == 1
    assert not any(name.startswith("mx.") and name != "mx.a-dane-ok.test" for name in received)
