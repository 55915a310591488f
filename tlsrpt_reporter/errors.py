"""The project's one exception hierarchy: every error says what, which value, and the fix."""

from __future__ import annotations

import errno
import os
import pwd


class TlsRptError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(TlsRptError):
    """A configuration file or command-line value is missing or wrong (exit code 2)."""


class DatagramRejected(TlsRptError):
    """A datagram is not a valid libtlsrpt protocol-v1 datagram.

    ``reason`` is one of :data:`tlsrpt_reporter.wire.decode.REJECT_REASONS`, used as a counter name.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StoreError(TlsRptError):
    """The SQLite store cannot be opened, migrated or read."""


class CollectorError(TlsRptError):
    """The collector cannot start (socket in use, bad socket path, permissions)."""


def os_fix(exc: OSError, path: str | os.PathLike[str]) -> str:
    """What went wrong with ``path`` and the usual fix, as one clause for an error line."""
    who = _user()
    where = os.fspath(path)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied for user {who}: give that user access to {where} (and search "
            "access to its directories), or run as the user that owns it"
        )
    if exc.errno == errno.ENOENT:
        return f"{where} or a directory above it does not exist: create it or fix the path"
    if exc.errno == errno.EROFS:
        return (
            "read-only file system (under systemd, ProtectSystem=strict: put the path under "
            "StateDirectory= or add it to ReadWritePaths=)"
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the file system of {where}: free some space"
    if exc.errno == errno.ECONNREFUSED:
        return f"nothing is listening on {where}: start the collector or fix the socket path"
    return exc.strerror or str(exc)


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
