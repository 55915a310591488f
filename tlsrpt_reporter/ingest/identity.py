"""Knowing a log file again: which saved position belongs to it, and whether it still holds
what was read.

A file is known by its content, not its name or inode: the hash of its first bytes (up to
:data:`HEAD_BYTES`; log lines start with a time and a queue id, so two different logs do not
share them). That finds it again after a rename (``mail.log`` -> ``mail.log.1``), a
copy-and-truncate rotation (the copy), and compression (``mail.log.2.gz``, whose decompressed
bytes are the same). A hash of the :data:`CHECK_BYTES` just before the saved offset says the
bytes up to there are still the ones counted; only then does reading go on from the offset.

Pure: bytes and saved rows in, a decision out; reading the files is the caller's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.store.ingest_position import SavedPosition

HEAD_BYTES = 4096
CHECK_BYTES = 256
CONTENT_PREFIX = "content:"


def digest(data: bytes) -> str:
    """The hash the identity keeps of ``data``."""
    return hashlib.sha256(data).hexdigest()


def identity(head: bytes, before_offset: bytes) -> dict[str, Any]:
    """What a saved position holds to know its file again: the hash of its first bytes
    ``head`` and of the bytes ``before_offset`` (at most :data:`CHECK_BYTES`)."""
    return {
        "head": digest(head),
        "head_len": len(head),
        "check": digest(before_offset[-CHECK_BYTES:]),
    }


def content_key(head: bytes) -> str:
    """The key a file read once is saved under when no saved position was its own."""
    return CONTENT_PREFIX + digest(head)


def find(saved: list[SavedPosition], fmt: str, head: bytes) -> SavedPosition | None:
    """The saved position of the file whose first bytes are ``head``, read as ``fmt``; of
    several (a file followed and also read once), the one furthest on."""
    best: SavedPosition | None = None
    for row in saved:
        state = row.position.state
        length, wanted = state.get("head_len"), state.get("head")
        if row.fmt != fmt or not isinstance(length, int) or not isinstance(wanted, str):
            continue
        # A position saved when the file was shorter than HEAD_BYTES knows fewer bytes.
        if not 0 < length <= len(head) or digest(head[:length]) != wanted:
            continue
        if best is None or row.position.offset > best.position.offset:
            best = row
    return best


@dataclass(frozen=True)
class Resume:
    """Where to read a known file from; ``known`` False: read it as a new file (the saved
    position does not fit it); ``note`` says why when it is not the usual case."""

    offset: int
    known: bool
    note: str = ""


def resume(name: str, row: SavedPosition, before_offset: bytes) -> Resume:
    """Go on after ``row``'s offset in the file ``name`` when the bytes before it
    (``before_offset``, as read there now) are the ones counted."""
    offset = row.position.offset
    wanted = row.position.state.get("check")
    if len(before_offset) < min(offset, CHECK_BYTES):
        return Resume(offset, True, f"{name} is shorter than when it was read: nothing new")
    if wanted is not None and digest(before_offset[-CHECK_BYTES:]) != wanted:
        return Resume(
            0,
            False,
            f"read {name} again from the start: it begins like a file read before, but its "
            f"bytes before offset {offset} differ",
        )
    return Resume(offset, True)
