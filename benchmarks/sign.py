"""DKIM signing benchmark: dkimpy's pure-Python RSA against OpenSSL's, on the same report mails.

    python benchmarks/sign.py [--mails 4000] [--old-mails 300] [--verify 100]

Composes ``--mails`` report mails (RSA-2048 key, PKCS#8 PEM, as ``openssl genpkey`` writes it),
then times in the same run: composing; signing ``--old-mails`` of them in this process with
dkimpy's own signer (pure-Python RSA, what ``dkim.sign`` did before); the same mails with
``dkim.sign`` (dkimpy's canonicalisation, RSA by OpenSSL), which must give the same bytes;
all ``--mails`` with ``dkim.sign`` in this process; and all of them with ``bulk_sign.sign_all``
over every core. ``--verify`` mails of each signed set, chosen at random, are verified by
dkimpy in strict RFC 8460 mode against the key's s=tlsrpt record. Prints mails per second and
CPU milliseconds per mail. The exit code is 1 when a signature fails or old and new differ.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from harness.measure import machine_lines

from tlsrpt_reporter.deliver import bulk_sign, dkim, mail

STAMP = 1_772_420_000  # a fixed t=, so that the old and the new signature can be compared


class _Dkimpy(dkimpy.DKIM):  # type: ignore[misc]
    """dkimpy unmodified (pure-Python RSA) with a fixed ``t=``."""

    def gen_header(self, fields: list[tuple[bytes, bytes]], *args: Any, **kw: Any) -> Any:
        fields[:] = [(k, str(STAMP).encode() if k == b"t" else v) for k, v in fields]
        return super().gen_header(fields, *args, **kw)


def _old_sign(message: bytes, key: dkim.LoadedKey) -> bytes:
    signer = _Dkimpy(message, signature_algorithm=b"rsa-sha256", tlsrpt=True)
    include = [*dkim.SIGNED_HEADERS, *dkim.SIGNED_HEADERS, "Cc", "Reply-To"]
    signature: bytes = signer.sign(
        key.key.selector.encode(),
        key.key.domain.encode(),
        key.private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[h.encode() for h in include],
        length=False,
    )
    return signature + message


def _compose(count: int) -> list[bytes]:
    rng = random.Random(7)
    date = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
    out = []
    for n in range(count):
        domain = f"d{n:05d}.example"
        parts = [b'{"n": %d}' % rng.randrange(10**6) for _ in range(rng.randrange(1, 40))]
        report = b'{"policies": [%s]}' % b",".join(parts)
        out.append(mail.compose(
            report_domain=domain, submitter="bench.example",
            report_id=f"2026.03.01.{n}@bench.example", from_addr="tlsrpt@bench.example",
            to_addrs=[f"tlsrpt@{domain}"], gzip_body=gzip.compress(report, mtime=0),
            filename=f"bench.example!{domain}!1772323200!1772409599!{n}.json.gz",
            summary_text=f"A TLS report for {domain}.\n", date=date,
            message_id=f"m{n}@bench.example",
        ))  # fmt: skip
    return out


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (bulk_sign's workers)."""
    own, kids = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(label: str, count: int, work: Callable[[], list[bytes]]) -> tuple[list[bytes], float]:
    """Run ``work`` and print its wall time and rate, and its CPU time per mail (the machine is
    shared: the CPU time is the cost, the wall time also shows what other load took)."""
    started, cpu = time.perf_counter(), _cpu()
    result = work()
    seconds, cpu_seconds = time.perf_counter() - started, _cpu() - cpu
    rate = count / seconds
    print(f"{label:<48} {count:>5} mails {seconds:6.2f} s {rate:6.0f} mails/s, "
          f"CPU {1000 * cpu_seconds / count:5.2f} ms/mail")  # fmt: skip
    return result, rate


def _verify(label: str, signed: list[bytes], key: dkim.LoadedKey, sample: int) -> bool:
    record = dkim.record_for(key).encode()
    name = f"{dkim.record_name(key.key)}.".encode()

    def dnsfunc(qname: bytes, timeout: float = 5) -> bytes | None:
        return record if qname == name else None

    picked = random.Random(11).sample(range(len(signed)), min(sample, len(signed)))
    bad = [i for i in picked if not dkimpy.DKIM(signed[i], tlsrpt="strict").verify(dnsfunc=dnsfunc)]
    print(f"  dkimpy verified {len(picked) - len(bad)}/{len(picked)} of {label}"
          + (f"  FAILED: mails {bad[:10]}" if bad else ""))  # fmt: skip
    return not bad


def main() -> int:
    """Run the benchmark; the exit code is 1 when a signature fails or old and new differ."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mails", type=int, default=4000)
    parser.add_argument("--old-mails", type=int, default=300)
    parser.add_argument("--verify", type=int, default=100)
    args = parser.parse_args()
    for line in machine_lines():
        print(line)
    with tempfile.TemporaryDirectory(prefix="tlsrpt-sign-bench-") as tmp:
        path = Path(tmp) / "key.pem"
        path.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048)
                         .private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))  # fmt: skip
        conf = dkim.DkimKey("bench.example", "tlsrpt", path)
        started = time.perf_counter()
        key = dkim.load_key(conf)
        print(f"load_key (PEM parsed and checked by dkimpy and OpenSSL, once per process): "
              f"{1000 * (time.perf_counter() - started):.0f} ms")  # fmt: skip
        messages, _ = _timed("compose", args.mails, lambda: _compose(args.mails))
        old_set = messages[: args.old_mails]
        old, old_rate = _timed("old: dkimpy pure-Python RSA, 1 process", len(old_set),
                               lambda: [_old_sign(m, key) for m in old_set])  # fmt: skip
        new_same, _ = _timed("new: dkim.sign (OpenSSL), same mails, 1 process", len(old_set),
                             lambda: [dkim.sign(m, [key], timestamp=STAMP)
                                      for m in old_set])  # fmt: skip
        identical = new_same == old
        print(f"  old and new signatures byte-identical: {identical}")
        new, new_rate = _timed("new: dkim.sign (OpenSSL), 1 process", args.mails,
                               lambda: [dkim.sign(m, [key]) for m in messages])  # fmt: skip
        bulk, bulk_rate = _timed(f"new: bulk_sign.sign_all, {os.cpu_count()} processes", args.mails,
                                 lambda: bulk_sign.sign_all(messages, [conf]))  # fmt: skip
        ok = all([
            _verify("the old signatures", old, key, args.verify),
            _verify("the new signatures (1 process)", new, key, args.verify),
            _verify("the bulk_sign signatures", bulk, key, args.verify),
        ])  # fmt: skip
        print(f"speed-up, 1 process: {new_rate / old_rate:.1f}x; "
              f"bulk_sign against old 1 process: {bulk_rate / old_rate:.1f}x")  # fmt: skip
    return 0 if ok and identical else 1


if __name__ == "__main__":
    sys.exit(main())
