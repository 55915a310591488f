"""DKIM-signing report mail (RFC 6376 §5, RFC 8460 §5.3): dkimpy canonicalises, OpenSSL signs.

dkimpy's own RSA is pure Python (about 8 ms of CPU per RSA-2048 signature) and its ``sign``
parses the PEM key, also in pure Python, on every call. For rsa-sha256 this module lays out the
DKIM-Signature tags as dkimpy's ``sign`` does, hashes the body and the signed header fields with
dkimpy's canonicalisation, folding and header selection, and hands only the RSA operation to
OpenSSL (``cryptography``), with the key parsed once per process (about 1 ms per mail in all).
RSASSA-PKCS1-v1_5 (RFC 8017 §8.2) is deterministic, so the bytes are exactly those dkimpy's
own signer writes; tests/deliver/test_dkim_openssl.py holds them to that. Ed25519 is left
entirely to dkimpy and PyNaCl, which are fast already.

Pure: bytes in, bytes out; the only outside state read is the clock, for a default ``t=``.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from tlsrpt_reporter.deliver.dkim_keys import DkimError, LoadedKey, openssl_rsa_key, record_name

#: Header fields every signature covers. RFC 8460 §5.3 names the TLS-Report-* fields; the rest
#: are what makes the report's identity and structure tamper-evident.
SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "TLS-Report-Domain",
    "TLS-Report-Submitter",
    "Auto-Submitted",
    "TLS-Required",
)
# Signed although absent: adding a Cc or Reply-To in transit then breaks the signature.
_ABSENT_SIGNED = ("Cc", "Reply-To")
_INCLUDE = [h.encode("ascii") for h in (*SIGNED_HEADERS, *SIGNED_HEADERS, *_ABSENT_SIGNED)]


def sign(message: bytes, keys: Sequence[LoadedKey], *, timestamp: int | None = None) -> bytes:
    """Return ``message`` with one DKIM-Signature per key prepended, in the order given.

    relaxed/relaxed canonicalisation; rsa-sha256 or ed25519-sha256; never an ``l=`` tag
    (RFC 8460 §5.3); the header list is :data:`SIGNED_HEADERS`, each listed once more than it
    occurs so that a second copy added in transit breaks the signature (RFC 6376 §8.15).
    ``timestamp`` is the signature's ``t=`` (default: now); both signature algorithms are
    deterministic, so the same message and ``timestamp`` give the same bytes on every retry.
    """
    if not keys:
        raise DkimError(
            "no DKIM key to sign with: RFC 8460 §5.3 requires report mail to be DKIM-signed; "
            "configure at least one [[reporter.mail.dkim]] table"
        )
    signatures: list[bytes] = []
    for loaded in keys:
        try:
            # tlsrpt=True makes dkimpy drop l= whatever else is asked (RFC 8460 §5.3); it adds
            # no tag to the signature: the s=tlsrpt marking lives in the DNS record.
            signer = _Signer(
                message, signature_algorithm=loaded.algorithm.encode("ascii"), tlsrpt=True
            )
            signer.timestamp = timestamp
            signature: bytes = signer.sign_with(loaded)
        except dkim.DKIMException as exc:
            raise DkimError(
                f"signing with DKIM key {loaded.key.key_path} ({record_name(loaded.key)}) "
                f"failed: {exc}"
            ) from exc
        signatures.append(signature)
    return b"".join(signatures) + message


class _Signer(dkim.DKIM):  # type: ignore[misc]  # dkimpy has no type information
    """dkimpy's signer, with ``t=`` set from :attr:`timestamp` when given (dkimpy always writes
    the current time), and rsa-sha256 signed by OpenSSL (:meth:`_sign_rsa`)."""

    timestamp: int | None = None

    def sign_with(self, loaded: LoadedKey) -> bytes:
        """The DKIM-Signature field (name, value, CRLF) for this message with ``loaded``."""
        selector = loaded.key.selector.encode("ascii")
        domain = loaded.key.domain.encode("ascii")
        if loaded.algorithm == "rsa-sha256":
            return self._sign_rsa(selector, domain, openssl_rsa_key(loaded.private_key))
        signature: bytes = self.sign(
            selector,
            domain,
            loaded.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=_INCLUDE,
            length=False,
        )
        return signature

    def gen_header(self, fields: list[tuple[bytes, bytes]], *args: object, **kw: object) -> Any:
        """Set ``t=`` in the fields about to be signed, then sign as dkimpy does (Ed25519)."""
        if self.timestamp is not None:
            fields[:] = [(k, str(self.timestamp).encode() if k == b"t" else v) for k, v in fields]
        return super().gen_header(fields, *args, **kw)

    def _sign_rsa(self, selector: bytes, domain: bytes, key: rsa.RSAPrivateKey) -> bytes:
        """What dkimpy's ``DKIM.sign`` and ``gen_header`` do for the one rsa-sha256 form used
        here, with dkimpy's canonicalisation and folding, but the key parsed once (dkimpy parses
        the PEM in pure Python on every call) and the RSA operation by OpenSSL."""
        policy = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
        fields = self._rsa_fields(selector, domain, policy)
        name = b"DKIM-Signature"
        # Hash the field with an empty b= (RFC 6376 §3.7), folded as it will be sent.
        unsigned = dkim.RE_BTAG.sub(
            b"\\1", dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(name))
        )
        hasher = hashlib.sha256()
        self.signed_headers = dkim.hash_headers(
            hasher,
            policy,
            policy.canonicalize_headers(self.headers),
            self.include_headers,
            (name, b" " + unsigned),
            dict(fields),
        )
        # RSASSA-PKCS1-v1_5 (RFC 8017 §8.2.1) over the precomputed SHA-256 of the headers.
        raw = key.sign(hasher.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        fields[-1] = (b"b", base64.b64encode(raw))
        value = b"; ".join(b"=".join(f) for f in fields) + self.linesep
        self.domain = domain
        self.selector = selector
        self.signature_fields = dict(fields)
        folded: bytes = dkim.fold(value, namelen=len(name), linesep=self.linesep)
        return name + b": " + folded

    def _rsa_fields(self, selector: bytes, domain: bytes, policy: Any) -> list[tuple[bytes, bytes]]:
        """The tags in dkimpy's order: relaxed/relaxed, ``i=@domain``, no ``l=`` (RFC 8460
        §5.3), the body hash of dkimpy's canonical body (RFC 6376 §3.7)."""
        self.include_headers = tuple(h.lower() for h in _INCLUDE)
        self.hasher = hashlib.sha256
        body = policy.canonicalize_body(self.body)
        stamp = self.timestamp if self.timestamp is not None else int(time.time())
        return [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", policy.to_c_value()),
            (b"d", domain),
            (b"i", b"@" + domain),
            (b"q", b"dns/txt"),
            (b"s", selector),
            (b"t", str(stamp).encode("ascii")),
            (b"h", b" : ".join(self.include_headers)),
            (b"bh", base64.b64encode(hashlib.sha256(body).digest())),
            # As dkimpy does: b= on a line of its own, so that folding again once it is filled
            # in leaves the whitespace of the other tags alone.
            (b"b", b"0" * 60),
        ]
