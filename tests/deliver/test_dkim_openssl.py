"""RSA DKIM signatures made with OpenSSL (``deliver.dkim_sign``): byte for byte what dkimpy's own
pure-Python signer writes for the same message and ``t=``, verified by dkimpy against records
served by a real DNS server; Ed25519 signatures unchanged; a key OpenSSL rejects refused at load."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dkim as dkimpy
import dns.message
import dns.query
import dns.rdatatype
import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rigs.dnsserver import HOST, DnsServer

from tlsrpt_reporter.deliver import dkim, dkim_keys, mail

DOMAIN = "example.net"
STAMP = 1_772_420_000


def write_rsa(path: Path, bits: int, fmt: serialization.PrivateFormat) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    )
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dkim.LoadedKey]:
    d = tmp_path_factory.mktemp("openssl-keys")
    seed = bytes(nacl.signing.SigningKey.generate())
    (d / "ed25519.key").write_bytes(base64.b64encode(seed) + b"\n")
    files = {
        "pkcs8": write_rsa(d / "pkcs8.pem", 2048, serialization.PrivateFormat.PKCS8),
        "pkcs1": write_rsa(d / "pkcs1.pem", 2048, serialization.PrivateFormat.TraditionalOpenSSL),
        "rsa3072": write_rsa(d / "rsa3072.pem", 3072, serialization.PrivateFormat.PKCS8),
        "ed": d / "ed25519.key",
    }
    return {sel: dkim.load_key(dkim.DkimKey(DOMAIN, sel, path)) for sel, path in files.items()}


@pytest.fixture(scope="module")
def dns_server(keys: dict[str, dkim.LoadedKey]) -> Iterator[DnsServer]:
    zone = {dkim.record_name(k.key): [("TXT", txt(dkim.record_for(k)))] for k in keys.values()}
    with DnsServer(zone) as server:
        yield server


def txt(text: str) -> str:
    """``text`` as TXT record data: 255-octet character-strings (RFC 1035 §3.3)."""
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


def dnsfunc(server: DnsServer) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` that asks the test DNS server as a resolver would: over UDP, and
    over TCP when the answer (an RSA-3072 record) does not fit a 512-octet datagram."""

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        query = dns.message.make_query(name.decode(), dns.rdatatype.TXT)
        answer, _ = dns.query.udp_with_fallback(query, HOST, port=server.port, timeout=10)
        for rrset in answer.answer:
            for rdata in rrset:
                return b"".join(rdata.strings)
        return None

    return lookup


class _DkimpyReference(dkimpy.DKIM):  # type: ignore[misc]  # dkimpy has no type information
    """dkimpy unmodified (its pure-Python RSA), but with a fixed ``t=``."""

    def gen_header(self, fields: list[tuple[bytes, bytes]], *args: Any, **kw: Any) -> Any:
        fields[:] = [(k, str(STAMP).encode() if k == b"t" else v) for k, v in fields]
        return super().gen_header(fields, *args, **kw)


def reference(message: bytes, key: dkim.LoadedKey) -> bytes:
    """The DKIM-Signature field dkimpy's own signer writes with the parameters of ``dkim.sign``."""
    signer = _DkimpyReference(message, signature_algorithm=key.algorithm.encode(), tlsrpt=True)
    include = [*dkim.SIGNED_HEADERS, *dkim.SIGNED_HEADERS, "Cc", "Reply-To"]
    signature: bytes = signer.sign(
        key.key.selector.encode(),
        key.key.domain.encode(),
        key.private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[h.encode() for h in include],
        length=False,
    )
    return signature


def report_mail(index: int) -> bytes:
    """Report mails that differ in size, header folding and body."""
    domain = f"{'sub.' * (index % 7)}example{index}.com"
    return mail.compose(
        report_domain=domain,
        submitter=DOMAIN,
        report_id=f"2026.03.01.{index}@example.net",
        from_addr="tlsrpt-noreply@example.net",
        to_addrs=[f"tls-reports@{domain}", *(f"r{i}@{domain}" for i in range(index % 4))],
        gzip_body=gzip.compress(b'{"policies": []}' * (1 + index * 37), mtime=0),
        filename=f"example.net!{domain}!1772323200!1772409599!{index}.json.gz",
        summary_text="A TLS report.\n" * (1 + index % 3),
        date=dt.datetime(2026, 3, 2, 1, index % 60, tzinfo=dt.UTC),
        message_id=f"m{index}@example.net",
    )


@pytest.mark.parametrize("selector", ["pkcs8", "pkcs1", "rsa3072", "ed"])
def test_signature_is_byte_identical_to_dkimpys_own_signer(
    keys: dict[str, dkim.LoadedKey], selector: str
) -> None:
    key = keys[selector]
    for index in range(12):
        message = report_mail(index)
        signed = dkim.sign(message, [key], timestamp=STAMP)
        assert signed == reference(message, key) + message


def test_every_rsa_and_ed25519_signature_verifies_against_records_from_dns(
    keys: dict[str, dkim.LoadedKey], dns_server: DnsServer
) -> None:
    order = [keys["pkcs8"], keys["ed"], keys["pkcs1"], keys["rsa3072"]]
    for index in range(6):
        signed = dkim.sign(report_mail(index), order)
        for idx, key in enumerate(order):
            verifier = dkimpy.DKIM(signed, tlsrpt="strict")
            assert verifier.verify(idx=idx, dnsfunc=dnsfunc(dns_server)), (index, key.key.selector)
            assert verifier.signature_fields[b"s"] == key.key.selector.encode()
    assert {q.name for q in dns_server.queries} == {dkim.record_name(k.key) for k in order}


def test_signature_over_a_changed_message_fails_verification(
    keys: dict[str, dkim.LoadedKey], dns_server: DnsServer
) -> None:
    signed = dkim.sign(report_mail(3), [keys["pkcs8"]])
    tampered = signed.replace(b"Subject: Report Domain: ", b"Subject: Report Domain:  x")
    assert tampered != signed
    assert not dkimpy.DKIM(tampered, tlsrpt="strict").verify(dnsfunc=dnsfunc(dns_server))


def test_default_timestamp_is_the_signing_time(keys: dict[str, dkim.LoadedKey]) -> None:
    before = int(dt.datetime.now(dt.UTC).timestamp())
    signed = dkim.sign(report_mail(1), [keys["pkcs8"]])
    after = int(dt.datetime.now(dt.UTC).timestamp())
    head = signed.split(b"\r\n\r\n", 1)[0].decode()
    stamp = int(head.split(" t=", 1)[1].split(";", 1)[0])
    assert before <= stamp <= after


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    size = bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + size + content


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def test_a_key_openssl_finds_inconsistent_is_refused_at_load(tmp_path: Path) -> None:
    # A PKCS#1 key whose CRT coefficient is wrong: dkimpy's parser takes it, but every
    # signature made with it would fail verification; OpenSSL's key check catches it.
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    public = numbers.public_numbers
    fields = [0, public.n, public.e, numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1]
    der = _der(0x30, b"".join(_der_int(v) for v in [*fields, numbers.iqmp + 1]))
    body = base64.encodebytes(der)
    path = tmp_path / "broken.pem"
    path.write_bytes(
        b"-----BEGIN RSA PRIVATE KEY-----\n" + body + b"-----END RSA PRIVATE KEY-----\n"
    )
    with pytest.raises(dkim.DkimError, match=r"broken\.pem holds an RSA key OpenSSL rejects"):
        dkim.load_key(dkim.DkimKey(DOMAIN, "sel", path))


def test_the_openssl_key_is_parsed_once_per_process(keys: dict[str, dkim.LoadedKey]) -> None:
    pem = keys["pkcs8"].private_key
    assert dkim_keys.openssl_rsa_key(pem) is dkim_keys.openssl_rsa_key(pem)
