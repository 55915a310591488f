"""DKIM keys for report mail: reading the private key file once, and the public record
(RFC 6376 §3.6.1) that belongs to it.

The only I/O is :func:`load_key` reading one key file, bounded in size. Signing is
:mod:`.dkim_sign`'s, the checks against published records are :mod:`.dkim`'s.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import dkim.crypto
import dkim.util
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import ConfigError

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]

MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers MUST NOT accept shorter keys
_MAX_KEY_FILE = 64 * 1024
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9_-]+)*")
# PKCS#8 PrivateKeyInfo for Ed25519 (RFC 8410 §7) is this fixed prefix and the 32-byte seed.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_RSA_OID = bytes.fromhex("06092a864886f70d010101")
_TXT_CHUNK = 255  # RFC 1035 §3.3: a character-string holds at most 255 octets


class DkimError(ConfigError):
    """A configured DKIM key cannot be loaded or used for signing: the operator must fix it."""


@dataclass(frozen=True)
class DkimKey:
    """One ``[[reporter.mail.dkim]]`` table: where the private key is and how it is named."""

    domain: str
    selector: str
    key_path: Path
    record: str = ""  # the published TXT text, for the offline self-check; empty: ask DNS


@dataclass(frozen=True)
class LoadedKey:
    """A key read and parsed, in the form dkimpy signs with."""

    key: DkimKey
    algorithm: Algorithm
    bits: int
    public_key: str  # the record's p= value (base64)
    private_key: bytes = field(repr=False)  # RSA: PEM; Ed25519: base64 of the 32-byte seed


def record_name(key: DkimKey) -> str:
    """The DNS name of the key's TXT record (RFC 6376 §3.6.2.1)."""
    return f"{key.selector}._domainkey.{key.domain}"


def load_key(key: DkimKey) -> LoadedKey:
    """Read and parse the private key of ``key``.

    Accepted: an RSA key in PEM (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8 ``PRIVATE KEY``, at least
    1024 bits), an Ed25519 key as dkimpy takes it (base64 of the 32-byte seed), or an Ed25519
    PKCS#8 PEM as ``openssl genpkey -algorithm ed25519`` writes it. Raises :class:`DkimError`
    naming the path when the file is missing, unreadable or not such a key.
    """
    try:
        domain = normalize_domain(key.domain)
    except ValueError as exc:
        raise DkimError(f"DKIM domain {key.domain!r} is not a domain name: {exc}") from None
    if not _SELECTOR.fullmatch(key.selector):
        raise DkimError(
            f"DKIM selector {key.selector!r} (domain {domain}) is not a valid selector: "
            "letters, digits, '-' and '_' in dot-separated labels (RFC 6376 §3.1)"
        )
    key = replace(key, domain=domain)
    data = _read_key_file(key)
    if b"-----BEGIN" in data:
        return _load_pem(key, data)
    try:
        seed = base64.b64decode(b"".join(data.split()), validate=True)
    except binascii.Error:
        seed = b""
    if len(seed) == 32:
        return _ed25519(key, seed)
    raise DkimError(
        f"DKIM key file {key.key_path} is not a private key: expected an RSA key in PEM form or "
        "an Ed25519 key as base64 of its 32-byte seed (or as a PKCS#8 PEM)"
    )


def record_for(key: LoadedKey, *, tlsrpt: bool = True) -> str:
    """The TXT record text to publish at :func:`record_name` for ``key``.

    With ``tlsrpt`` (the default) the record says ``s=tlsrpt`` (RFC 8460 §5.3): use that for
    the report-only key. ``tlsrpt=False`` gives an ordinary email key record.
    """
    kind = "rsa" if key.algorithm == "rsa-sha256" else "ed25519"
    service = " s=tlsrpt;" if tlsrpt else ""
    return f"v=DKIM1; k={kind};{service} p={key.public_key}"


def zone_entry(key: LoadedKey, *, tlsrpt: bool = True) -> str:
    """A zone-file line for :func:`record_for`, split into 255-octet strings (RFC 1035 §3.3)."""
    text = record_for(key, tlsrpt=tlsrpt)
    chunks = [text[i : i + _TXT_CHUNK] for i in range(0, len(text), _TXT_CHUNK)]
    quoted = " ".join(f'"{chunk}"' for chunk in chunks)
    return f"{record_name(key.key)}. IN TXT ( {quoted} )"


def _read_key_file(key: DkimKey) -> bytes:
    where = f"DKIM key file {key.key_path} (selector {key.selector}, domain {key.domain})"
    try:
        with key.key_path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise DkimError(f"{where} does not exist: create it or fix the key path") from None
    except PermissionError:
        raise DkimError(
            f"{where} cannot be read by this user: make it readable by the reporter's user"
        ) from None
    except OSError as exc:
        raise DkimError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if len(data) > _MAX_KEY_FILE:
        raise DkimError(f"{where} is larger than {_MAX_KEY_FILE} bytes: not a private key")
    if not data.strip():
        raise DkimError(f"{where} is empty")
    return data


def _load_pem(key: DkimKey, data: bytes) -> LoadedKey:
    # dkimpy's PEM reader expects LF line ends.
    pem = data.replace(b"\r\n", b"\n")
    if b"ENCRYPTED" in pem:
        raise DkimError(
            f"DKIM key file {key.key_path} is encrypted: store it unencrypted, readable only by "
            "the reporter's user"
        )
    if b"PRIVATE KEY-----" not in pem:
        raise DkimError(
            f"DKIM key file {key.key_path} holds no private key (a public key or certificate?)"
        )
    match = re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*(.*?)\s*-----END", pem, re.DOTALL)
    try:
        der = base64.b64decode(b"".join(match.group(1).split()) if match else b"", validate=True)
    except binascii.Error:
        der = b""
    if der.startswith(_ED25519_PKCS8_PREFIX) and len(der) == len(_ED25519_PKCS8_PREFIX) + 32:
        return _ed25519(key, der[len(_ED25519_PKCS8_PREFIX) :])
    try:
        rsa = dkim.crypto.parse_pem_private_key(pem)
    except (dkim.crypto.UnparsableKeyError, ValueError, TypeError, IndexError) as exc:
        raise DkimError(
            f"DKIM key file {key.key_path} is not an RSA or Ed25519 private key in PEM form: {exc}"
        ) from None
    modulus: int = rsa["modulus"]
    exponent: int = rsa["publicExponent"]
    bits = modulus.bit_length()
    if bits < MIN_RSA_BITS:
        raise DkimError(
            f"DKIM key file {key.key_path} holds a {bits}-bit RSA key; RFC 8301 §3.2 requires at "
            "least 1024 bits (2048 recommended)"
        )
    try:
        openssl_rsa_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise DkimError(
            f"DKIM key file {key.key_path} holds an RSA key OpenSSL rejects: {exc}; "
            "create a new key with `openssl genrsa 2048`"
        ) from None
    return LoadedKey(key, "rsa-sha256", bits, _rsa_spki_base64(modulus, exponent), pem)


@functools.lru_cache(maxsize=16)
def openssl_rsa_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The RSA key of ``pem`` (as :func:`load_key` returns it) as an OpenSSL key object.

    Parsed once per process: OpenSSL checks the key's consistency on loading (tens of
    milliseconds for RSA-2048), which signing a mail must not pay each time. Raises
    ``ValueError`` when OpenSSL rejects the key; :func:`load_key` has already said so then.
    """
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"not an RSA private key but {type(key).__name__}")
    return key


def _ed25519(key: DkimKey, seed: bytes) -> LoadedKey:
    try:
        signing = nacl.signing.SigningKey(seed)
    except nacl.exceptions.CryptoError as exc:
        raise DkimError(f"DKIM key file {key.key_path}: not an Ed25519 seed ({exc})") from None
    public: bytes = bytes(signing.verify_key)
    # RFC 8463 §4.2: p= is the base64 of the raw 32-byte public key.
    return LoadedKey(
        key,
        "ed25519-sha256",
        256,
        base64.b64encode(public).decode("ascii"),
        base64.b64encode(seed),
    )


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _rsa_spki_base64(modulus: int, exponent: int) -> str:
    """SubjectPublicKeyInfo (RFC 5280 §4.1) of an RSA key, base64: the usual DKIM p= form."""
    rsa_public = _der(0x30, _der_int(modulus) + _der_int(exponent))
    algorithm = _der(0x30, _RSA_OID + b"\x05\x00")
    spki = _der(0x30, algorithm + _der(0x03, b"\x00" + rsa_public))
    return base64.b64encode(spki).decode("ascii")
