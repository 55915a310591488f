"""The reporter's process lock: one reporter process at a time on a state database."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from tlsrpt_reporter.errors import StoreError


class LockedError(StoreError):
    """Another reporter process works on this state database."""


class ProcessLock:
    """An exclusive lock next to the state database: one reporter process at a time.

    The file is opened without O_TRUNC and without following a link, and is refused unless it
    is a regular file with no other name: a link planted at the lock's name must not make us
    truncate what it points to. Its content (the holder's pid) is rewritten only once we hold
    the lock, so a process turned away leaves the holder's pid in place.
    """

    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(f"{db_path}.lock")
        self._fd = -1

    def __enter__(self) -> ProcessLock:
        # O_NONBLOCK: a FIFO or device planted there must not hang the open (it is refused below).
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"lock file {self.path} is a symbolic link: refusing to follow "
                                 "it; remove the link") from None  # fmt: skip
            raise StoreError(f"cannot create lock file {self.path}: {exc.strerror}") from None
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(self._fd)
            raise StoreError(f"lock file {self.path} is not a regular file with one name: "
                             "refusing to use it; remove it")  # fmt: skip
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise LockedError(
                f"another tlsrpt-reporter process holds {self.path}: "
                "only one reporter may work on a state database at a time"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)
