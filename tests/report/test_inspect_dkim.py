"""``inspect`` on report mails signed by the project's own signer: the DKIM verdict, with the key
served by a real DNS server on loopback, or given offline with ``--dkim-key``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rigs.dnsserver import DnsServer
from support.site import dkim_key

from tlsrpt_reporter import cli
from tlsrpt_reporter.deliver import dkim, mail
from tlsrpt_reporter.report import document as report
from tlsrpt_reporter.report import inspect_dkim

DAY = "2026-03-01"
IDENTITY = report.Identity("Example Mail Ltd", "tlsrpt@example.net")
KEY_NAME = "tlsrpt._domainkey.example.net"


def export_line() -> dict[str, object]:
    return {
        "day": DAY,
        "domain": "example.com",
        "record": "v=TLSRPTv1; rua=mailto:tlsrpt@example.com",
        "policy": {
            "policy-type": "no-policy-found",
            "policy-domain": "example.com",
            "policy-string": [],
        },
        "summary": {"total-successful-session-count": 12, "total-failure-session-count": 0},
        "failure-details": [],
    }


@dataclass(frozen=True)
class Signed:
    key: dkim.LoadedKey
    record: str
    mail: bytes  # our report mail, signed


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    pem, record = dkim_key(tmp_path_factory.mktemp("key"), "example.net")
    key = dkim.load_key(dkim.DkimKey("example.net", "tlsrpt", pem))
    built = report.build(DAY, "example.com", [export_line()], IDENTITY)
    message = mail.compose(
        report_domain=built.domain,
        submitter=IDENTITY.submitter,
        report_id=built.report_id,
        from_addr="tlsrpt-noreply@example.net",
        to_addrs=["tlsrpt@example.com"],
        gzip_body=built.gzip_bytes,
        filename=built.filename,
        summary_text=report.summary_text(built, IDENTITY),
        date=dt.datetime(2026, 3, 2, 3, 4, 5, tzinfo=dt.UTC),
        message_id="m1.abc@example.net",
    )
    return Signed(key, record, dkim.sign(message, [key]))


@pytest.fixture
def dns(signed: Signed) -> Iterator[DnsServer]:
    with DnsServer(
        {KEY_NAME: [("TXT", _zone_text(signed.record))]},
        servfail=("broken._domainkey.example.net",),
    ) as server:
        yield server


def _zone_text(record: str) -> str:
    return " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))


def config(tmp_path: Path, dns: DnsServer) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns.port}\ntimeout = 2\n')
    return path


def inspect(
    capsys: pytest.CaptureFixture[str], path: Path, content: bytes, *args: str
) -> tuple[int, str]:
    path.write_bytes(content)
    code = cli.main(["inspect", str(path), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_our_signed_mail_passes_with_the_key_from_dns(
    tmp_path: Path, signed: Signed, dns: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = inspect(
        capsys, tmp_path / "r.eml", signed.mail, "--config", str(config(tmp_path, dns))
    )
    assert code == 0, out
    assert "DKIM:          pass (d=example.net s=tlsrpt)" in out
    assert dns.asked(KEY_NAME, "TXT")


def test_a_changed_header_fails_and_says_so(
    tmp_path: Path, signed: Signed, dns: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    tampered = signed.mail.replace(b"TLS-Report-Domain: example.com", b"TLS-Report-Domain: x.com")
    assert tampered != signed.mail
    code, out = inspect(
        capsys, tmp_path / "r.eml", tampered, "--config", str(config(tmp_path, dns))
    )
    # RFC 6376 §6.3: a failed signature is treated as none; the report itself is still valid.
    assert code == 0, out
    assert "DKIM:          fail (d=example.net s=tlsrpt: the signature does not match" in out
    code, out = inspect(
        capsys, tmp_path / "r.eml", tampered, "--config", str(config(tmp_path, dns)),
        "--require-dkim",
    )  # fmt: skip
    assert code == 1
    assert "validation:    INVALID, 1 problem(s):" in out
    assert "--require-dkim asks for a valid signature" in out


def test_a_changed_body_fails_on_its_hash(signed: Signed) -> None:
    head, _, body = signed.mail.partition(b"\r\n\r\n")
    changed = head + b"\r\n\r\n" + body.replace(b"Report", b"Rapport", 1)
    verdict = inspect_dkim.verify(changed, lambda name: [signed.record])
    assert verdict.result == "fail"
    assert "body hash mismatch" in verdict.reason


def test_no_key_record_and_a_dns_failure_are_told_apart(
    tmp_path: Path, signed: Signed, dns: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = str(config(tmp_path, dns))
    other = signed.mail.replace(b"s=tlsrpt;", b"s=gone;")
    _, out = inspect(capsys, tmp_path / "r.eml", other, "--config", conf)
    assert "DKIM:          fail (d=example.net s=gone: no key record at gone._domainkey." in out
    broken = signed.mail.replace(b"s=tlsrpt;", b"s=broken;")
    code, out = inspect(capsys, tmp_path / "r.eml", broken, "--config", conf)
    assert code == 0, out
    assert "DKIM:          temperror (d=example.net s=broken: no DNS answer for " in out


def test_an_unsigned_mail_is_none_and_offline_is_not_checked(
    tmp_path: Path, signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    unsigned = signed.mail[signed.mail.index(b"From:") :]
    assert b"DKIM-Signature" not in unsigned
    code, out = inspect(capsys, tmp_path / "u.eml", unsigned, "--offline")
    assert code == 0, out
    assert "DKIM:          none (the mail has no DKIM-Signature; RFC 8460 §5.3 requires one)" in out
    code, out = inspect(capsys, tmp_path / "s.eml", signed.mail, "--offline")
    assert code == 0, out
    assert "DKIM:          not checked (1 signature(s); no key source (--offline))" in out
    code, out = inspect(capsys, tmp_path / "u.eml", unsigned, "--offline", "--require-dkim")
    assert code == 1


def test_a_key_record_file_checks_offline(
    tmp_path: Path, signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    zone_line = tmp_path / "zone.txt"
    zone_line.write_text(dkim.zone_entry(signed.key) + "\n")
    bare = tmp_path / "bare.txt"
    bare.write_text(signed.record + "\n")
    for key_file in (zone_line, bare):
        code, out = inspect(capsys, tmp_path / "r.eml", signed.mail, "--dkim-key", str(key_file))
        assert code == 0, out
        assert "DKIM:          pass (d=example.net s=tlsrpt)" in out
    # A zone line answers for its own name only.
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text(dkim.zone_entry(signed.key).replace("tlsrpt._domainkey", "x._domainkey"))
    _, out = inspect(capsys, tmp_path / "r.eml", signed.mail, "--dkim-key", str(elsewhere))
    assert "DKIM:          fail (d=example.net s=tlsrpt: no key record at " in out


def test_another_key_does_not_verify(tmp_path: Path, signed: Signed) -> None:
    _, other_record = dkim_key(tmp_path, "example.net")
    verdict = inspect_dkim.verify(signed.mail, lambda name: [other_record])
    assert verdict.result == "fail"
    assert "the signature does not match" in verdict.reason


def test_a_bad_key_file_is_a_usage_error(
    tmp_path: Path, signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    code, out = inspect(capsys, tmp_path / "r.eml", signed.mail, "--dkim-key", str(junk))
    assert code == 2
    assert "--dkim-key" in out and "not a DKIM key record" in out


def test_a_folder_lists_the_dkim_verdict_of_each_mail(
    tmp_path: Path, signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.eml").write_bytes(signed.mail)
    (folder / "b.eml").write_bytes(signed.mail.replace(b"Subject: ", b"Subject: X"))
    key = tmp_path / "key.txt"
    key.write_text(signed.record)
    code = cli.main(["inspect", str(folder), "--dkim-key", str(key)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].endswith("; DKIM pass (d=example.net s=tlsrpt)")
    assert "; DKIM fail (d=example.net s=tlsrpt: the signature does not match" in out[1]
    assert out[2] == "2 files: 2 valid, 0 invalid"
