"""``check-record`` through the real CLI against a real DNS server and a real HTTPS receiver."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rigs.dnsserver import DnsServer
from rigs.httpsserver import HttpsTestServer

from tlsrpt_reporter import cli
from tlsrpt_reporter.cli.check_record import judge_mail_hosts, judge_mx, judge_probe, lint_txt
from tlsrpt_reporter.config.schema import HttpsSettings
from tlsrpt_reporter.deliver.https_probe import ProbeResult
from tlsrpt_reporter.deliver.record import ReportURI
from tlsrpt_reporter.deliver.resolver import MxRecords


def txt(text: str) -> tuple[str, str]:
    return ("TXT", f'"{text}"')


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Rig:
    tmp: Path
    dns: DnsServer
    web: HttpsTestServer

    def config(self, *, allow_private: bool = True, verify: bool = True) -> Path:
        path = self.tmp / f"config-{allow_private}-{verify}.toml"
        lines = [
            "[dns]",
            'nameservers = ["127.0.0.1"]',
            f"port = {self.dns.port}",
            "timeout = 0.5",
            "[reporter.https]",
            f'ca_file = "{self.web.ca_file}"',
            "timeout = 5",
            f"verify_certificates = {str(verify).lower()}",
        ]
        if allow_private:
            lines.append('allow_private = ["127.0.0.0/8"]')
        path.write_text("\n".join(lines) + "\n")
        return path

    def run(
        self, capsys: pytest.CaptureFixture[str], *args: str, config: Path | None = None
    ) -> tuple[int, str]:
        code = cli.main(["check-record", *args, "--config", str(config or self.config())])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    def record(self, domain: str, *texts: str) -> None:
        self.dns.zone[f"_smtp._tls.{domain}"] = [txt(text) for text in texts]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    zone = {
        "reports.test": [("A", "127.0.0.1")],
        "wrongname.test": [("A", "127.0.0.1")],
        "mx.example": [("MX", "10 mail.mx.example.")],
        "mail.mx.example": [("A", "127.0.0.1")],
        "nullmx.example": [("MX", "0 .")],
        "amx.example": [("A", "192.0.2.25")],
        "nothing.example": [("TXT", '"only text here"')],
    }
    with (
        HttpsTestServer(tmp_path) as web,
        DnsServer(
            zone,
            servfail=("_smtp._tls.servfail.example",),
            drop=("_smtp._tls.slow.example",),
        ) as dns,
    ):
        yield Rig(tmp_path, dns, web)


def lines(output: str, level: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(level)]


def about(output: str, level: str, subject: str) -> str:
    """The one line of ``level`` whose subject (what it is about) starts with ``subject``."""
    (line,) = [line for line in lines(output, level) if line.split()[1].startswith(subject)]
    return line


# --- the record itself ----------------------------------------------------------------------------


def test_good_record_with_mailto_and_https_is_usable(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    url = rig.web.url()
    rig.record("good.example", f"v=TLSRPTv1; rua=mailto:tlsrpt@mx.example,{url}")
    code, out = rig.run(capsys, "good.example")
    assert code == 0, out
    assert not lines(out, "error"), out
    assert "mail.mx.example (127.0.0.1)" in out
    https_line = about(out, "ok", url)
    assert "certificate valid" in https_line
    assert "answered HEAD with HTTP" in https_line
    assert "allowed by reporter.https.allow_private" in https_line
    # A real TLS session with the rua's name in SNI, to the address that was checked.
    assert "reports.test" in rig.web.sni_names
    assert rig.web.connections == ["127.0.0.1"]
    assert "usable: 2 of 2" in out


def test_json_output_carries_the_verdict_and_every_finding(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.record("good.example", "v=TLSRPTv1; rua=mailto:tlsrpt@mx.example")
    code, out = rig.run(capsys, "good.example", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["usable"] is True
    assert data["record"] == "v=TLSRPTv1; rua=mailto:tlsrpt@mx.example"
    assert {f["level"] for f in data["findings"]} == {"ok"}
    assert any(f["subject"] == "mailto:tlsrpt@mx.example" for f in data["findings"])


@pytest.mark.parametrize(
    ("domain", "records", "code", "level", "says"),
    [
        pytest.param(
            "multi.example",
            ["v=TLSRPTv1; rua=mailto:a@mx.example", "v=TLSRPTv1; rua=mailto:b@mx.example",
             "google-site-verification=abc"],
            1, "error", ["2 TLSRPT records", "exactly one"],
            id="two-tlsrpt-records-make-the-domain-unusable",
        ),
        pytest.param(
            "absent.example", [], 1, "error", ["_smtp._tls.absent.example has no TXT record"],
            id="no-record-at-all-is-an-error",
        ),
        pytest.param(
            "malformed.example", ["v=TLSRPTv1; rua"], 1, "error",
            ["field 'rua' is not name=value"], id="malformed-record-shows-the-grammar-error",
        ),
        pytest.param(
            "scheme.example", ["v=TLSRPTv1; rua=ftp://reports.example/in,mailto:a@mx.example"],
            0, "warning", ["scheme 'ftp' is not supported"],
            id="unsupported-scheme-is-a-warning-beside-a-usable-rua",
        ),
    ],
)  # fmt: skip
def test_a_record_problem_is_the_one_finding_of_its_level(
    rig: Rig,
    capsys: pytest.CaptureFixture[str],
    domain: str,
    records: list[str],
    code: int,
    level: str,
    says: list[str],
) -> None:
    if records:  # none at all: the name does not exist
        rig.record(domain, *records)
    exit_code, out = rig.run(capsys, domain)
    assert exit_code == code, out
    (finding,) = lines(out, level)
    for text in says:
        assert text in finding


def test_wrong_case_version_is_flagged_and_not_counted(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.record("case.example", "v=tlsrptv1; rua=mailto:a@mx.example")
    code, out = rig.run(capsys, "case.example")
    assert code == 1
    assert "must start with 'v=TLSRPTv1;' exactly" in lines(out, "warning")[0]


# --- mailto destinations --------------------------------------------------------------------------


def test_mail_domain_without_mx_falls_back_to_its_address(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.record("arua.example", "v=TLSRPTv1; rua=mailto:tlsrpt@amx.example")
    code, out = rig.run(capsys, "arua.example")
    assert code == 0, out
    line = about(out, "ok", "mailto:")
    assert "no MX record" in line and "RFC 5321" in line and "192.0.2.25" in line


# --- destinations that cannot take reports (of any scheme) ----------------------------------------


@pytest.mark.parametrize(
    ("domain", "record", "says"),
    [
        pytest.param(
            "ftponly.example", "v=TLSRPTv1; rua=ftp://reports.example/in", ["no usable rua"],
            id="only-unsupported-schemes-leave-nothing-usable",
        ),
        pytest.param(
            "nullrua.example", "v=TLSRPTv1; rua=mailto:tlsrpt@nullmx.example", ["null MX"],
            id="null-mx-mail-domain",
        ),
        pytest.param(
            "norua.example", "v=TLSRPTv1; rua=mailto:tlsrpt@nothing.example",
            ["no MX and no A/AAAA"], id="mail-domain-without-mx-or-address",
        ),
        pytest.param(
            "ghost.example", "v=TLSRPTv1; rua=mailto:tlsrpt@ghost-mail.example",
            ["does not exist (NXDOMAIN)"], id="nonexistent-mail-domain",
        ),
        pytest.param(
            "noaddr.example", "v=TLSRPTv1; rua=https://nowhere.example/tlsrpt",
            ["nowhere.example has no A or AAAA record"], id="https-host-without-address",
        ),
        pytest.param(
            "closed.example", "v=TLSRPTv1; rua={closed}", ["connection refused"],
            id="unreachable-port",
        ),
        pytest.param(
            "mismatch.example", "v=TLSRPTv1; rua={wrongname}",
            ["TLS certificate not valid", "wrongname.test"], id="certificate-for-another-name",
        ),
    ],
)  # fmt: skip
def test_a_destination_that_cannot_take_reports_is_an_error(
    rig: Rig, capsys: pytest.CaptureFixture[str], domain: str, record: str, says: list[str]
) -> None:
    # {closed}: an https rua on a port nothing listens on; {wrongname}: the test server under a
    # name its certificate is not for.
    closed = f"https://reports.test:{closed_port()}/v1/tlsrpt"
    rig.record(domain, record.format(closed=closed, wrongname=rig.web.url(name="wrongname.test")))
    code, out = rig.run(capsys, domain)
    assert code == 1
    error = lines(out, "error")[0]
    for text in says:
        assert text in error


# --- https destinations ---------------------------------------------------------------------------


def test_loopback_rua_without_allow_private_is_refused_and_never_contacted(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.record("loop.example", f"v=TLSRPTv1; rua={rig.web.url()}")
    code, out = rig.run(capsys, "loop.example", config=rig.config(allow_private=False))
    assert code == 1
    refusal = lines(out, "error")[0]
    assert "refused" in refusal and "127.0.0.1 is loopback" in refusal
    assert rig.web.connections == []


def test_private_rua_is_only_a_warning_when_another_destination_works(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.record("mixed.example", f"v=TLSRPTv1; rua={rig.web.url()},mailto:a@mx.example")
    code, out = rig.run(capsys, "mixed.example", config=rig.config(allow_private=False))
    assert code == 0, out
    assert "127.0.0.1 is loopback" in lines(out, "error")[0]
    assert "usable: 1 of 2" in out


def test_certificate_error_is_a_warning_when_verification_is_off(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.record("mismatch.example", f"v=TLSRPTv1; rua={rig.web.url(name='wrongname.test')}")
    code, out = rig.run(capsys, "mismatch.example", config=rig.config(verify=False))
    assert code == 0, out
    warning = lines(out, "warning")[0]
    assert "the certificate is not valid" in warning and "posts anyway" in warning
    assert "answered HEAD" in warning


# --- DNS failures and usage -----------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["servfail.example", "slow.example"])
def test_dns_failure_says_dns_failed_not_no_record(
    rig: Rig, capsys: pytest.CaptureFixture[str], domain: str
) -> None:
    code, out = rig.run(capsys, domain)
    assert code == 1
    (error,) = lines(out, "error")
    assert "DNS lookup failed" in error
    assert "no TXT record" not in out and "TLSRPT record" not in out


def test_invalid_domain_is_a_usage_error(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = rig.run(capsys, "not a domain")
    assert code == 2
    assert "is not a domain name" in out


def test_missing_domain_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["check-record"])
    assert exc.value.code == 2


# --- the pure judging -----------------------------------------------------------------------------


def test_near_expiry_certificate_is_a_warning() -> None:
    now = 1_000_000_000.0
    result = ProbeResult("192.0.2.1", tls_version="TLSv1.3", not_after=now + 3 * 86400, status=200)
    works, level, text = judge_probe(result, HttpsSettings(), now)
    assert (works, level) == (True, "warning")
    assert "expires in 3 days" in text


def test_not_found_path_is_a_warning() -> None:
    result = ProbeResult("192.0.2.1", status=404, reason="Not Found")
    works, level, text = judge_probe(result, HttpsSettings(), 0.0)
    assert (works, level) == (True, "warning")
    assert "path does not exist" in text


def test_other_txt_records_are_ignored_when_counting() -> None:
    findings, record = lint_txt(
        "_smtp._tls.x", ["v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@b.example"]
    )
    assert record == "v=TLSRPTv1; rua=mailto:a@b.example"
    assert [f.level for f in findings] == ["ok"]


# --- the mailto judgments, pure: no DNS server needed ---------------------------------------

MAILTO = ReportURI("mailto", "tlsrpt@example.org")


def test_judge_mx_a_null_mx_alone_means_no_mail_at_all() -> None:
    hosts, findings = judge_mx(MAILTO, MxRecords("ok", ((0, ""),)))
    assert hosts is None
    assert [f.level for f in findings] == ["error"] and "RFC 7505" in findings[0].text


def test_judge_mx_nxdomain_is_an_error_and_no_mx_means_the_domain_itself() -> None:
    assert judge_mx(MAILTO, MxRecords("nxdomain", ()))[0] is None
    assert judge_mx(MAILTO, MxRecords("nodata", ())) == (["example.org"], [])


def test_judge_mx_a_null_mx_beside_real_ones_is_a_warning_and_ignored() -> None:
    hosts, findings = judge_mx(MAILTO, MxRecords("ok", ((0, ""), (10, "mx.example.org"))))
    assert hosts == ["mx.example.org"]
    assert [f.level for f in findings] == ["warning"]


def test_judge_mail_hosts_needs_one_host_with_an_address() -> None:
    addr = ipaddress.ip_address("192.0.2.25")
    ok, finding = judge_mail_hosts(MAILTO, ["a", "b"], [None, [addr]], implicit=False)
    assert ok and finding.level == "ok" and "a (DNS lookup failed)" in finding.text
    bad, finding = judge_mail_hosts(MAILTO, ["a"], [[]], implicit=False)
    assert not bad and finding.level == "error"
    bad, finding = judge_mail_hosts(MAILTO, ["example.org"], [[]], implicit=True)
    assert not bad and "no MX and no A/AAAA" in finding.text
