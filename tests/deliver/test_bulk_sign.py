"""``tlsrpt_reporter.deliver.bulk_sign.sign_all`` directly: many messages come back in order, each
DKIM-signed with every key so that dkimpy verifies it against the key's record, both in this
process (small batches) and in the worker pool (large ones)."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import os
import re
from collections.abc import Callable

import dkim as dkimpy
import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tlsrpt_reporter.deliver import bulk_sign, dkim, mail

DOMAIN = "example.net"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[dkim.DkimKey]:
    d = tmp_path_factory.mktemp("bulk-keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (d / "rsa.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    seed = bytes(nacl.signing.SigningKey.generate())
    (d / "ed25519.key").write_bytes(base64.b64encode(seed) + b"\n")
    return [
        dkim.DkimKey(DOMAIN, "tlsrpt", d / "rsa.pem"),
        dkim.DkimKey(DOMAIN, "ed", d / "ed25519.key"),
    ]


def records(keys: list[dkim.DkimKey]) -> dict[str, str]:
    """The TXT records to publish for ``keys``, made from the keys themselves."""
    return {dkim.record_name(k): dkim.record_for(dkim.load_key(k)) for k in keys}


def dns(table: dict[str, str]) -> Callable[..., bytes | None]:
    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        text = table.get(name.decode().rstrip("."))
        return text.encode() if text is not None else None

    return lookup


def verifies(message: bytes, idx: int, table: dict[str, str]) -> bool:
    try:
        return bool(dkimpy.DKIM(message, tlsrpt="strict").verify(idx=idx, dnsfunc=dns(table)))
    except dkimpy.DKIMException:
        return False


def report_mail(n: int) -> bytes:
    """The n-th report mail: every one differs (domain, id, body), so order is checkable."""
    return mail.compose(
        report_domain=f"d{n}.example.com",
        submitter=DOMAIN,
        report_id=f"2026.03.01.{n:04d}@example.net",
        from_addr="tlsrpt-noreply@example.net",
        to_addrs=[f"tls-reports@d{n}.example.com"],
        gzip_body=gzip.compress(b'{"n": %d}' % n, mtime=0),
        filename=f"example.net!d{n}.example.com!1772323200!1772409599!{n:04d}.json.gz",
        summary_text=f"Report number {n}.\n",
        date=dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC),
        message_id=f"m{n}@example.net",
    )


def assert_signed_in_order(
    signed: list[bytes], originals: list[bytes], keys: list[dkim.DkimKey]
) -> None:
    assert len(signed) == len(originals)
    table = records(keys)
    for n, (out, original) in enumerate(zip(signed, originals, strict=True)):
        assert out.endswith(original), n  # the n-th result is the n-th message, unchanged
        # One signature per key, in the order the keys were given.
        head = out.split(b"\r\n\r\n", 1)[0].decode()
        assert re.findall(r";\s*s=([\w.-]+);", head) == [k.selector for k in keys]
        for idx in range(len(keys)):
            assert verifies(out, idx, table), (n, idx)


def test_without_keys_the_messages_come_back_unchanged(keys: list[dkim.DkimKey]) -> None:
    originals = [report_mail(n) for n in range(3)]
    assert bulk_sign.sign_all(originals, []) == originals


def test_a_small_batch_is_signed_with_every_key_in_order(keys: list[dkim.DkimKey]) -> None:
    originals = [report_mail(n) for n in range(12)]
    signed = bulk_sign.sign_all(originals, keys)
    assert_signed_in_order(signed, originals, keys)


def test_a_large_batch_signed_by_worker_processes_keeps_order_and_verifies(
    keys: list[dkim.DkimKey],
) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: sign_all signs in this process, which the test above covers")
    # More than 50 (the pool's threshold) and more than one chunk of 32 per worker.
    originals = [report_mail(n) for n in range(150)]
    signed = bulk_sign.sign_all(originals, keys)
    assert_signed_in_order(signed, originals, keys)
