"""Signing many report mails at once, on every core.

With the RSA operation done by OpenSSL (:mod:`.dkim_sign`) an RSA-2048 signature costs about
1-2 ms per mail and core, most of it OpenSSL's; that only matters when thousands of mails are
signed together: ``build`` and the benchmark. ``send`` signs one mail at a time, spread over
hours, and does not use this.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from tlsrpt_reporter.deliver import dkim

_KEYS: list[dkim.LoadedKey] = []
# Below this many mails one process is quicker: each worker process starts and loads the keys.
_POOL_FROM = 50


def _load(keys: Sequence[dkim.DkimKey]) -> None:
    _KEYS[:] = [dkim.load_key(k) for k in keys]


def _sign(message: bytes) -> bytes:
    return dkim.sign(message, _KEYS)


def sign_all(messages: Sequence[bytes], keys: Sequence[dkim.DkimKey]) -> list[bytes]:
    """Sign each message with every key, in order; in worker processes when it pays off.

    Raises :class:`dkim.DkimError` naming the key when a key cannot be loaded.
    """
    if not keys:
        return list(messages)
    # Loaded here first: a bad key fails with its own message rather than as a broken pool,
    # and forked workers inherit the OpenSSL key objects already parsed (dkim_keys caches them).
    loaded = [dkim.load_key(k) for k in keys]
    if len(messages) < _POOL_FROM or (os.cpu_count() or 1) < 2:
        return [dkim.sign(m, loaded) for m in messages]
    workers = os.cpu_count() or 2
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_load, initargs=(list(keys),)
    ) as pool:
        return list(pool.map(_sign, messages, chunksize=32))
