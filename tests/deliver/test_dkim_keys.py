"""``tlsrpt_reporter.deliver.dkim_keys`` directly: loading RSA and Ed25519 private keys from
real files in every accepted form, refusing short, oversized, empty and garbage files, and the
public record (``record_for``, ``zone_entry``), its ``p=`` checked against the key's public half.
"""

from __future__ import annotations

import base64
import random
import re
from pathlib import Path

import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tlsrpt_reporter.deliver.dkim_keys import (
    MIN_RSA_BITS,
    DkimError,
    DkimKey,
    LoadedKey,
    load_key,
    record_for,
    record_name,
    zone_entry,
)

DOMAIN = "example.net"
MAX_KEY_FILE = 64 * 1024


def pem(
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, fmt: serialization.PrivateFormat
) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def spki_base64(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    """The usual DKIM p= value, made by the cryptography package (not by the module)."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def ed25519_raw_base64(key: ed25519.Ed25519PrivateKey) -> str:
    """RFC 8463 §4.2's p= value: the raw 32-byte public key."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load(path: Path, selector: str = "tlsrpt", domain: str = DOMAIN) -> LoadedKey:
    return load_key(DkimKey(domain, selector, path))


@pytest.fixture(scope="module")
def rsa_2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _is_probable_prime(n: int) -> bool:
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    if n < 2:
        return False
    for p in small:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def short_rsa_key() -> rsa.RSAPrivateKey:
    """A 1023-bit RSA key: the cryptography package will not generate one under 1024 bits, but
    it loads one built from its numbers."""
    rng = random.Random(8301)

    def prime(bits: int) -> int:
        while True:
            candidate = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
            if (candidate - 1) % 65537 and _is_probable_prime(candidate):
                return candidate

    p, q, e = prime(512), prime(511), 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q),
    )  # fmt: skip
    key = numbers.private_key()
    assert key.key_size == MIN_RSA_BITS - 1
    return key


# --- RSA --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt",
    [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL],
    ids=["pkcs8", "pkcs1"],
)
def test_an_rsa_key_loads_from_a_pem_file(
    tmp_path: Path, rsa_2048: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat
) -> None:
    path = tmp_path / "rsa.pem"
    path.write_bytes(pem(rsa_2048, fmt))
    loaded = load(path)
    assert loaded.algorithm == "rsa-sha256"
    assert loaded.bits == 2048
    assert loaded.public_key == spki_base64(rsa_2048)
    assert loaded.key == DkimKey(DOMAIN, "tlsrpt", path)


def test_an_rsa_pem_with_crlf_line_ends_loads(tmp_path: Path, rsa_2048: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "rsa.pem"
    path.write_bytes(pem(rsa_2048, serialization.PrivateFormat.PKCS8).replace(b"\n", b"\r\n"))
    loaded = load(path)
    assert loaded.public_key == spki_base64(rsa_2048)
    assert b"\r" not in loaded.private_key  # dkimpy's PEM reader wants LF


def test_a_1024_bit_rsa_key_is_the_shortest_accepted(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
    path = tmp_path / "rsa1024.pem"
    path.write_bytes(pem(key, serialization.PrivateFormat.PKCS8))
    loaded = load(path)
    assert loaded.bits == 1024
    assert loaded.public_key == spki_base64(key)


def test_an_rsa_key_shorter_than_1024_bits_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.pem"
    path.write_bytes(pem(short_rsa_key(), serialization.PrivateFormat.TraditionalOpenSSL))
    with pytest.raises(DkimError, match=r"holds a 1023-bit RSA key; RFC 8301 §3\.2 requires"):
        load(path)


# --- Ed25519 ----------------------------------------------------------------------------------


def test_an_ed25519_seed_in_base64_loads(tmp_path: Path) -> None:
    signing = nacl.signing.SigningKey.generate()
    seed = bytes(signing)
    path = tmp_path / "ed.key"
    path.write_bytes(base64.b64encode(seed) + b"\n")
    loaded = load(path, "ed")
    assert loaded.algorithm == "ed25519-sha256"
    assert loaded.bits == 256
    assert loaded.public_key == base64.b64encode(bytes(signing.verify_key)).decode()
    assert loaded.private_key == base64.b64encode(seed)  # as dkimpy signs with it


def test_an_ed25519_pkcs8_pem_as_openssl_writes_it_loads(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ed.pem"
    path.write_bytes(pem(key, serialization.PrivateFormat.PKCS8))
    loaded = load(path, "ed")
    assert loaded.algorithm == "ed25519-sha256"
    assert loaded.public_key == ed25519_raw_base64(key)
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert loaded.private_key == base64.b64encode(seed)


def test_a_base64_value_that_is_not_32_bytes_is_not_an_ed25519_seed(tmp_path: Path) -> None:
    path = tmp_path / "ed.key"
    path.write_bytes(base64.b64encode(b"\x01" * 31))
    with pytest.raises(DkimError, match="is not a private key: expected an RSA key in PEM"):
        load(path, "ed")


# --- refused files ----------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_unparsed(tmp_path: Path) -> None:
    seed = base64.b64encode(bytes(nacl.signing.SigningKey.generate()))
    at_limit = tmp_path / "at-limit.key"
    at_limit.write_bytes(seed + b"\n" * (MAX_KEY_FILE - len(seed)))
    assert at_limit.stat().st_size == MAX_KEY_FILE
    assert load(at_limit, "ed").algorithm == "ed25519-sha256"  # whitespace around is fine
    over = tmp_path / "over.key"
    over.write_bytes(seed + b"\n" * (MAX_KEY_FILE - len(seed) + 1))
    with pytest.raises(DkimError, match=f"is larger than {MAX_KEY_FILE} bytes: not a private key"):
        load(over, "ed")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b" \n\t\n", "is empty"),
        (b"hello, I am not a key\n", "is not a private key"),
        (bytes(range(256)) * 4, "is not a private key"),
        (
            b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
            "is not an RSA or Ed25519 private key in PEM form",
        ),
        (
            b"-----BEGIN RSA PRIVATE KEY-----\n!!!!\n-----END RSA PRIVATE KEY-----\n",
            "is not an RSA or Ed25519 private key in PEM form",
        ),
    ],
    ids=["empty", "whitespace", "text", "binary", "pem-of-nonsense", "pem-not-base64"],
)
def test_garbage_is_refused_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(DkimError, match=re.escape(message)) as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_a_public_key_is_refused_as_not_private(
    tmp_path: Path, rsa_2048: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "public.pem"
    path.write_bytes(
        rsa_2048.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(DkimError, match="holds no private key"):
        load(path)


def test_an_encrypted_key_is_refused(tmp_path: Path, rsa_2048: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "encrypted.pem"
    path.write_bytes(
        rsa_2048.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(DkimError, match="is encrypted: store it unencrypted"):
        load(path)


def test_a_missing_file_or_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DkimError, match="does not exist: create it or fix the key path"):
        load(tmp_path / "missing.pem")
    with pytest.raises(DkimError, match="cannot be read"):
        load(tmp_path)


def test_a_bad_selector_or_domain_is_refused_before_the_file_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(DkimError, match="is not a valid selector"):
        load(missing, selector="bad selector")
    with pytest.raises(DkimError, match="is not a domain name"):
        load(missing, domain="exa mple.net")


def test_the_domain_is_normalized(tmp_path: Path) -> None:
    path = tmp_path / "ed.key"
    path.write_bytes(base64.b64encode(bytes(nacl.signing.SigningKey.generate())))
    assert load(path, domain="Example.NET.").key.domain == "example.net"


# --- the record -------------------------------------------------------------------------------


def test_record_for_an_rsa_key_carries_its_public_key_and_s_tlsrpt(
    tmp_path: Path, rsa_2048: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "rsa.pem"
    path.write_bytes(pem(rsa_2048, serialization.PrivateFormat.TraditionalOpenSSL))
    loaded = load(path)
    p = spki_base64(rsa_2048)
    assert record_for(loaded) == f"v=DKIM1; k=rsa; s=tlsrpt; p={p}"
    assert record_for(loaded, tlsrpt=False) == f"v=DKIM1; k=rsa; p={p}"
    assert record_name(loaded.key) == "tlsrpt._domainkey.example.net"


def test_record_for_an_ed25519_key_carries_the_raw_public_key(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ed.pem"
    path.write_bytes(pem(key, serialization.PrivateFormat.PKCS8))
    loaded = load(path, "ed2026")
    assert record_for(loaded) == f"v=DKIM1; k=ed25519; s=tlsrpt; p={ed25519_raw_base64(key)}"


def test_zone_entry_splits_the_record_into_255_octet_strings(
    tmp_path: Path, rsa_2048: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "rsa.pem"
    path.write_bytes(pem(rsa_2048, serialization.PrivateFormat.PKCS8))
    loaded = load(path)
    entry = zone_entry(loaded)
    assert entry.startswith("tlsrpt._domainkey.example.net. IN TXT ( ")
    assert entry.endswith(" )")
    chunks = re.findall(r'"([^"]*)"', entry)
    assert len(chunks) > 1  # a 2048-bit record is longer than one string may be
    assert all(len(chunk) <= 255 for chunk in chunks)
    assert "".join(chunks) == record_for(loaded)
