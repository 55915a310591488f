"""Signing many report mails at once, on every core.

dkimpy's RSA is pure Python (about 10 ms per RSA-2048 signature here), which only matters when
thousands of mails are signed together: ``build`` and the benchmark. ``send`` signs one mail at a
time, spread over hours, and does not use this.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from tlsrpt_reporter.deliver import dkim

_KEYS: list[dkim.LoadedKey] = []


def _load(keys: Sequence[dkim.DkimKey]) -> None:
    _KEYS[:] = [dkim.load_key(k) for k in keys]


def _sign(message: bytes) -> bytes:
    return dkim.sign(message, _KEYS)


def sign_all(messages: Sequence[bytes], keys: Sequence[dkim.DkimKey]) -> list[bytes]:
    """Sign each message with every key, in order; in worker processes when it pays off."""
    if not keys:
        return list(messages)
    if len(messages) < 50 or (os.cpu_count() or 1) < 2:
        loaded = [dkim.load_key(k) for k in keys]
        return [dkim.sign(m, loaded) for m in messages]
    workers = os.cpu_count() or 2
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_load, initargs=(list(keys),)
    ) as pool:
        return list(pool.map(_sign, messages, chunksize=32))
