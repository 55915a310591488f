"""Watching what the code under test does to the file system, step by step, through Python's
audit hooks (PEP 578): every ``os.open``, ``os.chmod``, ``os.link``, ``socket.bind`` … raises an
event before it runs, so a test can look at the file system between two steps, or play a racing
attacker at exactly the worst moment, without timing.

A hook cannot be removed once added: one hook is installed for the whole test run and calls
whatever :func:`watching` currently registered, in the thread that registered it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Watcher = Callable[[str, tuple[Any, ...]], None]

_current: dict[int, Watcher] = {}
_installed = False
_busy = threading.local()


def _hook(event: str, args: tuple[Any, ...]) -> None:
    watcher = _current.get(threading.get_ident())
    if watcher is None or getattr(_busy, "on", False):
        return
    _busy.on = True  # what the watcher does itself raises events too: not watched
    try:
        watcher(event, args)
    finally:
        _busy.on = False


@contextmanager
def watching(watcher: Watcher) -> Iterator[None]:
    """Call ``watcher(event, args)`` for each audit event this thread raises inside the block."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    _current[threading.get_ident()] = watcher
    try:
        yield
    finally:
        del _current[threading.get_ident()]
