"""DKIM for report mail (RFC 8460 §5.3): real RSA and Ed25519 keys, verified by dkimpy."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import dkim as dkimpy
import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tlsrpt_reporter.deliver import dkim, mail

DOMAIN = "example.net"


def write_rsa(path: Path, fmt: serialization.PrivateFormat) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    path.write_bytes(pem)
    return key


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    write_rsa(d / "rsa.pem", serialization.PrivateFormat.PKCS8)
    write_rsa(d / "rsa-pkcs1.pem", serialization.PrivateFormat.TraditionalOpenSSL)
    write_rsa(d / "other-rsa.pem", serialization.PrivateFormat.PKCS8)
    # Ed25519 as dkimpy takes it: base64 of the 32-byte seed (made with PyNaCl).
    seed = bytes(nacl.signing.SigningKey.generate())
    (d / "ed25519.key").write_bytes(base64.b64encode(seed) + b"\n")
    # ... and as `openssl genpkey -algorithm ed25519` writes it.
    ed = ed25519.Ed25519PrivateKey.generate()
    (d / "ed25519.pem").write_bytes(
        ed.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return d


def loaded(keydir: Path, name: str, selector: str) -> dkim.LoadedKey:
    return dkim.load_key(dkim.DkimKey(DOMAIN, selector, keydir / name))


@pytest.fixture(scope="module")
def rsa_key(keydir: Path) -> dkim.LoadedKey:
    return loaded(keydir, "rsa.pem", "tlsrpt")


@pytest.fixture(scope="module")
def ed_key(keydir: Path) -> dkim.LoadedKey:
    return loaded(keydir, "ed25519.key", "ed")


def report_mail() -> bytes:
    return mail.compose(
        report_domain="example.com",
        submitter=DOMAIN,
        report_id="2026.03.01.ab12@example.net",
        from_addr="tlsrpt-noreply@example.net",
        to_addrs=["tls-reports@example.com"],
        gzip_body=gzip.compress(b'{"policies": []}', mtime=0),
        filename="example.net!example.com!1772323200!1772409599!ab12.json.gz",
        summary_text="A TLS report.\n",
        date=dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC),
        message_id="m1@example.net",
    )


def dns(records: Mapping[str, str]) -> Callable[..., bytes | None]:
    """dkimpy's documented dnsfunc hook, answering from a fixed table."""

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        text = records.get(name.decode().rstrip("."))
        return text.encode() if text is not None else None

    return lookup


def verify(message: bytes, idx: int, records: Mapping[str, str], mode: bool | str) -> bool:
    """dkimpy's verdict on the idx-th signature (dkimpy raises for some failures)."""
    try:
        return bool(dkimpy.DKIM(message, tlsrpt=mode).verify(idx=idx, dnsfunc=dns(records)))
    except dkimpy.DKIMException:
        return False


def published(*keys: dkim.LoadedKey) -> dict[str, str]:
    """The DNS of a domain that publishes each key's TLSRPT record under its selector."""
    return {dkim.record_name(key.key): dkim.record_for(key) for key in keys}


def signature_tags(message: bytes) -> list[dict[str, str]]:
    """The tag=value lists of the DKIM-Signature fields, unfolded."""
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    fields = re.findall(r"^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M | re.I)
    out = []
    for value in fields:
        flat = re.sub(r"\s+", "", value)
        out.append(dict(tag.split("=", 1) for tag in flat.strip(";").split(";")))
    return out


def test_both_signatures_verify_in_strict_tlsrpt_mode(
    rsa_key: dkim.LoadedKey, ed_key: dkim.LoadedKey
) -> None:
    signed = dkim.sign(report_mail(), [rsa_key, ed_key])
    records = published(rsa_key, ed_key)
    assert verify(signed, 0, records, "strict")
    assert verify(signed, 1, records, "strict")
    tags = signature_tags(signed)
    assert [(t["d"], t["s"], t["a"]) for t in tags] == [
        (DOMAIN, "tlsrpt", "rsa-sha256"),
        (DOMAIN, "ed", "ed25519-sha256"),
    ]
    for t in tags:
        assert "l" not in t  # RFC 8460 §5.3
        assert t["c"] == "relaxed/relaxed"
        signed_headers = set(t["h"].lower().split(":"))
        assert {h.lower() for h in dkim.SIGNED_HEADERS} <= signed_headers
        assert {"tls-report-domain", "tls-report-submitter"} <= signed_headers


def test_signing_leaves_the_message_unchanged_below_the_signatures(
    rsa_key: dkim.LoadedKey,
) -> None:
    message = report_mail()
    signed = dkim.sign(message, [rsa_key])
    assert signed.endswith(message)
    assert signed.startswith(b"DKIM-Signature: ")


def test_changed_or_added_report_headers_break_the_signature(
    rsa_key: dkim.LoadedKey, ed_key: dkim.LoadedKey
) -> None:
    signed = dkim.sign(report_mail(), [rsa_key, ed_key])
    records = published(rsa_key, ed_key)
    changed = signed.replace(b"TLS-Report-Domain: example.com", b"TLS-Report-Domain: evil.test")
    added = signed.replace(
        b"\r\nTLS-Report-Domain:", b"\r\nTLS-Report-Domain: evil.test\r\nTLS-Report-Domain:"
    )
    body = signed.replace(b"A TLS report.", b"A TLS rep0rt.")
    for tampered in (changed, added, body):
        assert tampered != signed
        assert not verify(tampered, 0, records, "strict")
        assert not verify(tampered, 1, records, "strict")


def test_strict_receivers_need_s_tlsrpt_and_email_verifiers_refuse_it(
    rsa_key: dkim.LoadedKey,
) -> None:
    """Why two signatures: each kind of verifier accepts only one kind of record."""
    signed = dkim.sign(report_mail(), [rsa_key])
    name = dkim.record_name(rsa_key.key)
    tlsrpt_record = {name: dkim.record_for(rsa_key)}
    email_record = {name: dkim.record_for(rsa_key, tlsrpt=False)}
    assert verify(signed, 0, tlsrpt_record, "strict")
    assert not verify(signed, 0, email_record, "strict")
    assert verify(signed, 0, email_record, False)
    assert not verify(signed, 0, tlsrpt_record, False)


@pytest.mark.parametrize("name", ["rsa.pem", "rsa-pkcs1.pem", "ed25519.key", "ed25519.pem"])
def test_every_supported_key_form_loads_and_checks_ok(keydir: Path, name: str) -> None:
    key = loaded(keydir, name, "sel")
    check = dkim.check_key(key, dkim.record_for(key))
    assert check.level == "ok", check.message
    assert check.services == ("tlsrpt",)


def test_record_for_publishes_the_standard_public_key_forms(keydir: Path) -> None:
    key = loaded(keydir, "rsa.pem", "sel")
    private = serialization.load_pem_private_key((keydir / "rsa.pem").read_bytes(), None)
    spki = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert dkim.record_for(key) == f"v=DKIM1; k=rsa; s=tlsrpt; p={base64.b64encode(spki).decode()}"
    assert key.algorithm == "rsa-sha256"
    assert key.bits == 2048

    ed = loaded(keydir, "ed25519.pem", "ed")
    ed_private = serialization.load_pem_private_key((keydir / "ed25519.pem").read_bytes(), None)
    raw = ed_private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert dkim.record_for(ed, tlsrpt=False) == (
        f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    )


def test_zone_entry_splits_into_255_octet_strings(rsa_key: dkim.LoadedKey) -> None:
    entry = dkim.zone_entry(rsa_key)
    assert entry.startswith("tlsrpt._domainkey.example.net. IN TXT ( ")
    strings = re.findall(r'"([^"]*)"', entry)
    assert len(strings) >= 2
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == dkim.record_for(rsa_key)
    # The self-check takes the zone-file form as well.
    assert dkim.check_key(rsa_key, entry.split("TXT", 1)[1]).level == "ok"


def test_check_key_warns_when_the_record_lacks_s_tlsrpt(rsa_key: dkim.LoadedKey) -> None:
    check = dkim.check_key(rsa_key, dkim.record_for(rsa_key, tlsrpt=False))
    assert check.level == "warning"
    assert "s=tlsrpt" in check.message
    assert "RFC 6376 §3.6.1" in check.message
    assert "DMARC" in check.message
    assert check.services == ("*",)
    assert dkim.check_key(rsa_key, dkim.record_for(rsa_key).replace("tlsrpt", "email")).level == (
        "warning"
    )


def test_check_key_warns_about_s_email_tlsrpt_that_dkimpy_rejects(
    ed_key: dkim.LoadedKey,
) -> None:
    record = dkim.record_for(ed_key).replace("s=tlsrpt", "s=email:tlsrpt")
    check = dkim.check_key(ed_key, record)
    assert check.level == "warning"
    assert "dkimpy" in check.message
    assert check.services == ("email", "tlsrpt")


def test_check_key_reports_a_key_that_does_not_match_the_record(
    keydir: Path, rsa_key: dkim.LoadedKey
) -> None:
    other = loaded(keydir, "other-rsa.pem", "tlsrpt")
    check = dkim.check_key(rsa_key, dkim.record_for(other))
    assert check.level == "error"
    assert "does not match" in check.message
    assert str(rsa_key.key.key_path) in check.message
    # The same key without s=tlsrpt is still a mismatch, not a mere warning.
    assert dkim.check_key(rsa_key, dkim.record_for(other, tlsrpt=False)).level == "error"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("", "no record text"),
        ("this is not a DKIM record", "not a DKIM key record"),
        ("v=DKIM1; k=rsa; s=tlsrpt; p=", "revoked"),
        ("v=DKIM2; p=AAAA", "v=DKIM2"),
        ("v=DKIM1; k=rsa; s=tlsrpt; p=bm90IGEga2V5", "unusable"),
        ("v=DKIM1; k=ed25519; s=tlsrpt; p=AAAA", "k=ed25519"),
        ("v=DKIM1; k=rsa; s=http; p=AAAA", "s=http"),
    ],
)
def test_check_key_errors_on_bad_records(
    rsa_key: dkim.LoadedKey, record: str, expected: str
) -> None:
    check = dkim.check_key(rsa_key, record)
    assert check.level == "error"
    assert expected in check.message


def test_coverage_needs_a_tlsrpt_key_and_a_dmarc_key(
    rsa_key: dkim.LoadedKey, ed_key: dkim.LoadedKey
) -> None:
    tlsrpt = dkim.check_key(rsa_key, dkim.record_for(rsa_key))
    usual = dkim.check_key(ed_key, dkim.record_for(ed_key, tlsrpt=False))
    sender = "tlsrpt-noreply@example.net"
    assert dkim.coverage_problems([tlsrpt, usual], sender) == []
    (only_tlsrpt,) = dkim.coverage_problems([tlsrpt], sender)
    assert "DMARC" in only_tlsrpt
    (only_usual,) = dkim.coverage_problems([usual], sender)
    assert "s=tlsrpt" in only_usual
    # A usual key of an unrelated domain does not align with From.
    assert len(dkim.coverage_problems([tlsrpt, usual], "reports@other.example")) == 1


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.pem"
    with pytest.raises(dkim.DkimError, match=re.escape(str(path)) + ".*does not exist"):
        dkim.load_key(dkim.DkimKey(DOMAIN, "sel", path))


def test_unreadable_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(dkim.DkimError, match=re.escape(str(tmp_path)) + ".*cannot be read"):
        dkim.load_key(dkim.DkimKey(DOMAIN, "sel", tmp_path))  # a directory


def test_key_file_without_read_permission_is_named(keydir: Path) -> None:
    """As an unprivileged user (root reads any file, so the test drops privileges)."""
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0:
        pytest.fail("this test drops privileges with setpriv and must run as root (CI does)")
    work = Path(tempfile.mkdtemp(prefix="tlsrpt-dkim-"))
    try:
        work.chmod(0o755)
        path = work / "key.pem"
        path.write_bytes((keydir / "rsa.pem").read_bytes())
        path.chmod(0o600)  # owned by root: nobody cannot read it
        code = (
            "import sys; from pathlib import Path; from tlsrpt_reporter.deliver import dkim\n"
            "try:\n"
            f"    dkim.load_key(dkim.DkimKey('{DOMAIN}', 'sel', Path(sys.argv[1])))\n"
            "except dkim.DkimError as exc:\n"
            "    print(exc)\n"
        )
        result = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
             sys.executable, "-c", code, str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert str(path) in result.stdout
        assert "cannot be read" in result.stdout
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x81 if n < 256 else 0x82]) + n.to_bytes(1 if n < 256 else 2, "big")
    )
    return bytes([tag]) + length + content


def _short_rsa_pem() -> bytes:
    """A structurally valid PKCS#1 RSAPrivateKey with a 512-bit modulus."""
    ints = [0, (1 << 511) | 1, 65537] + [(1 << 255) | 3] * 6
    der = _der(0x30, b"".join(_der(0x02, i.to_bytes(i.bit_length() // 8 + 1, "big")) for i in ints))
    body = base64.encodebytes(der)
    return b"-----BEGIN RSA PRIVATE KEY-----\n" + body + b"-----END RSA PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"hello, I am not a key\n", "is not a private key"),
        (base64.b64encode(b"x" * 31), "is not a private key"),
        (
            b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
            "holds no private key",
        ),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "encrypted",
        ),
        (
            b"-----BEGIN PRIVATE KEY-----\nTm90IGFuIFJTQSBrZXk=\n-----END PRIVATE KEY-----\n",
            "not an RSA or Ed25519 private key",
        ),
        (_short_rsa_pem(), "512-bit"),
    ],
)
def test_malformed_key_files_are_named(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(dkim.DkimError, match=re.escape(str(path)) + ".*" + expected):
        dkim.load_key(dkim.DkimKey(DOMAIN, "sel", path))


def test_bad_selector_and_domain_are_refused(keydir: Path) -> None:
    with pytest.raises(dkim.DkimError, match="selector"):
        dkim.load_key(dkim.DkimKey(DOMAIN, "bad selector", keydir / "rsa.pem"))
    with pytest.raises(dkim.DkimError, match="domain"):
        dkim.load_key(dkim.DkimKey("exa mple.net", "sel", keydir / "rsa.pem"))


def test_signing_without_keys_is_refused() -> None:
    with pytest.raises(dkim.DkimError, match="RFC 8460"):
        dkim.sign(report_mail(), [])


def test_private_key_is_not_in_the_repr(rsa_key: dkim.LoadedKey) -> None:
    assert b"PRIVATE" in rsa_key.private_key
    assert "PRIVATE" not in repr(rsa_key)
