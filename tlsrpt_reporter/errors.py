"""The project's one exception hierarchy: every error says what, which value, and the fix."""

from __future__ import annotations


class TlsRptError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(TlsRptError):
    """A configuration file or command-line value is missing or wrong (exit code 2)."""


class DatagramRejected(TlsRptError):
    """A datagram is not a valid libtlsrpt protocol-v1 datagram.

    ``reason`` is one of :data:`tlsrpt_reporter.wire.REJECT_REASONS`, used as a counter name.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StoreError(TlsRptError):
    """The SQLite store cannot be opened, migrated or read."""


class CollectorError(TlsRptError):
    """The collector cannot start (socket in use, bad socket path, permissions)."""
