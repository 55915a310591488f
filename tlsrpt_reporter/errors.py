"""The project's one exception hierarchy: every error says what, which value, and the fix."""

from __future__ import annotations

import errno
import os
import pwd


class TlsRptError(Exception):
    """Base class of every error this project raises on purpose.

    An error that is none of the kinds below is a runtime failure (exit code 1): something on
    this host or the network, not the operator's input, went wrong. The command line maps the
    kinds to exit codes in one place (``tlsrpt_reporter.cli.app.exit_code``).
    """


class ConfigError(TlsRptError):
    """A configuration file or command-line value is missing or wrong (exit code 2)."""


class InputError(TlsRptError):
    """Data handed to a command cannot be used: a report file, a log, a record (exit code 2)."""


class StoreError(TlsRptError):
    """A database cannot be opened, migrated, read or written (exit code 1)."""


class DeliveryError(TlsRptError):
    """One attempt to deliver a report to one destination failed (exit code 1).

    ``permanent`` says that retrying cannot help (a 5xx reply, a destination we may never use);
    everything else is retried with backoff (RFC 8460 §5.5). The transports add what they know:
    :class:`~tlsrpt_reporter.deliver.smtp.SmtpDeliveryError` the server and the SMTP stage,
    :class:`~tlsrpt_reporter.deliver.https.HttpsDeliveryError` the URL, address and status.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class DatagramRejected(InputError):
    """A datagram is not a valid libtlsrpt protocol-v1 datagram.

    ``reason`` is one of :data:`tlsrpt_reporter.wire.decode.REJECT_REASONS`, used as a counter name.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


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
