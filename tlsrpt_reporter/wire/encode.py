"""A datagram client that behaves like libtlsrpt: unbound socket, non-blocking sends.

Used by ``replay``, the benchmarks and the tests. A full receive queue drops the datagram at
the sender (EAGAIN), exactly as it does for Postfix; the drop is counted, not retried.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from tlsrpt_reporter.errors import TlsRptError, os_fix

_DROPPED = (errno.EAGAIN, errno.ENOBUFS)


class SendError(TlsRptError):
    """The collector's socket cannot be reached at all (missing, refused, no permission)."""


# Every datagram waiting in the collector's queue also counts against the sender's send buffer
# (the default 208 KiB holds ~170 of them). Postfix opens a fresh socket per event, so only the
# receiver's queue length limits it; one long-lived client socket needs a larger buffer to
# behave the same (measured at queue length 512: 167 queued by default, 512 with 4 MiB).
MTA_LIKE_SNDBUF = 4 * 1024 * 1024


class DatagramSender:
    """Sends datagrams to a collector socket with MSG_DONTWAIT; counts sent and dropped.

    ``sndbuf`` sets SO_SNDBUF (capped by net.core.wmem_max); :data:`MTA_LIKE_SNDBUF` makes one
    client socket queue as many datagrams as many short-lived MTA sockets would.
    """

    def __init__(self, path: str, sndbuf: int | None = None) -> None:
        self.path = path
        self.sent = 0
        self.dropped = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if sndbuf is not None:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)

    def send(self, data: bytes) -> bool:
        """Send one datagram; False when the collector's queue was full (dropped)."""
        try:
            self._sock.sendto(data, socket.MSG_DONTWAIT, self.path)
        except OSError as exc:
            if exc.errno in _DROPPED:
                self.dropped += 1
                return False
            if exc.errno in (errno.EACCES, errno.EPERM):
                fix = "the socket's mode and group do not let this user write: add the user to "
                fix += "collectd.socket_group, or widen collectd.socket_mode"
            else:
                fix = os_fix(exc, self.path)
            raise SendError(f"cannot send to collector socket {self.path}: {fix}") from None
        self.sent += 1
        return True

    def close(self) -> None:
        """Close the client socket."""
        self._sock.close()

    def __enter__(self) -> DatagramSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# libtlsrpt's JSON escapes: the short forms where JSON has them, \u00XX for other controls.
_SHORT_ESCAPES = {0x22: b'\\"', 0x5C: b"\\\\", 0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n",
                  0x0D: b"\\r", 0x09: b"\\t"}  # fmt: skip


def _escape(value: str | bytes) -> bytes:
    """libtlsrpt's string escaping: quote, backslash and control characters (DEL included);
    bytes >= 0x80 pass through untouched, so invalid UTF-8 from a remote server reaches the
    collector as it is."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    out = bytearray(b'"')
    for b in raw:
        short = _SHORT_ESCAPES.get(b)
        if short is not None:
            out += short
        elif b < 0x20 or b == 0x7F:
            out += b"\\u%04x" % b
        else:
            out.append(b)
    out += b'"'
    return bytes(out)


def _member(key: str, value: Any) -> bytes:
    if isinstance(value, str | bytes):
        return _escape(key) + b": " + _escape(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _escape(key) + b":" + str(value).encode()
    if isinstance(value, Sequence):
        return _escape(key) + b":[" + b",".join(_value(v) for v in value) + b"]"
    raise TypeError(f"cannot encode {key!r}: {type(value).__name__}")


def _value(value: Any) -> bytes:
    if isinstance(value, str | bytes):
        return _escape(value)
    if isinstance(value, Mapping):
        return encode_object(value)
    raise TypeError(f"cannot encode {type(value).__name__} in an array")


def encode_object(obj: Mapping[str, Any]) -> bytes:
    """Serialise a datagram object (wire keys, in the caller's order) the way libtlsrpt does.

    String values may be ``bytes`` to send invalid UTF-8, as a remote server can cause.
    """
    return b"{" + b",".join(_member(k, v) for k, v in obj.items() if v is not None) + b"}"


def datagram(
    domain: str | bytes,
    policies: Sequence[Mapping[str, Any]],
    record: str | bytes | None = None,
) -> bytes:
    """A protocol-v1 datagram: ``policies`` are wire-form policy objects (``policy-type``,
    ``policy-domain``, ``policy-string``, ``mx-host``, ``failure-details``, ``t``, ``f``)."""
    obj: dict[str, Any] = {"dpv": "1", "d": domain}
    if record is not None:
        obj["pr"] = record
    obj["policies"] = list(policies)
    return encode_object(obj)
