"""A harmless look at an ``https:`` rua for ``check-record``: TLS handshake, then one HEAD.

This module owns the probe of one (rua, checked address) pair: connect to the address, handshake
with the rua's host name in SNI and certificate check, send ``HEAD <path>`` and read the status
line. It never sends a report, never resolves a name (the caller resolved the host and vetted the
address with :func:`tlsrpt_reporter.deliver.https.check_address`, as delivery does), never follows
a redirect and never reads a body. It returns what it saw; judging it is the caller's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

from tlsrpt_reporter import __version__
from tlsrpt_reporter.config.schema import HttpsSettings
from tlsrpt_reporter.deliver.addresses import IPAddress
from tlsrpt_reporter.deliver.https import ReportUrl
from tlsrpt_reporter.deliver.https_client import ssl_context

# Enough for any status line; a longer first line is not HTTP.
_MAX_STATUS_LINE = 8192
# What a connection or an answer can fail with (ValueError: not HTTP; ssl errors are OSErrors).
_FAILURES = (OSError, EOFError, ValueError, asyncio.LimitOverrunError)


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw. ``error`` is set when no HTTP answer arrived.

    ``certificate_error`` is the verification failure (None: the certificate was accepted); when
    it is set the probe went on without verification only if the settings allow it.
    """

    address: str
    error: str | None = None
    certificate_error: str | None = None
    tls_version: str = ""
    not_after: float | None = None  # the certificate's expiry, Unix time, when verified
    status: int | None = None
    reason: str = ""


async def probe(
    target: ReportUrl, ip: IPAddress, settings: HttpsSettings, timeout: float
) -> ProbeResult:
    """Handshake with ``ip`` as ``target.host`` and ask ``HEAD``; never raises for network trouble.

    The certificate is always verified first, so the answer says whether it is valid. When it
    is not and ``settings.verify_certificates`` is off (the reporter would post anyway), the
    HTTP request is made over an unverified connection.
    """
    address = str(ip)
    try:
        return await asyncio.wait_for(_exchange(target, address, settings, True), timeout)
    except ssl.SSLCertVerificationError as exc:
        problem = _printable(exc.verify_message or str(exc))
    except TimeoutError:
        return ProbeResult(address, error=f"no answer within {timeout:g}s")
    except _FAILURES as exc:
        return ProbeResult(address, error=_describe(exc))
    if settings.verify_certificates:
        return ProbeResult(address, certificate_error=problem)
    try:
        seen = await asyncio.wait_for(_exchange(target, address, settings, False), timeout)
    except TimeoutError:
        return ProbeResult(
            address, error=f"no answer within {timeout:g}s", certificate_error=problem
        )
    except _FAILURES as exc:
        return ProbeResult(address, error=_describe(exc), certificate_error=problem)
    return ProbeResult(
        address,
        certificate_error=problem,
        tls_version=seen.tls_version,
        status=seen.status,
        reason=seen.reason,
    )


async def _exchange(
    target: ReportUrl, address: str, settings: HttpsSettings, verify: bool
) -> ProbeResult:
    # An IP-literal rua is checked against the address (ssl sends no SNI for an IP), a name
    # against the name: as delivery does.
    reader, writer = await asyncio.open_connection(
        address,
        target.port,
        ssl=ssl_context(settings, verify),
        server_hostname=target.host,
        limit=_MAX_STATUS_LINE,
    )
    try:
        tls = writer.get_extra_info("ssl_object")
        version = (tls.version() or "") if isinstance(tls, ssl.SSLObject) else ""
        not_after = None
        if verify and isinstance(tls, ssl.SSLObject):
            cert = tls.getpeercert()
            expiry = cert.get("notAfter") if cert else None
            if isinstance(expiry, str):
                not_after = float(ssl.cert_time_to_seconds(expiry))
        path = target.parsed.raw_path.decode("ascii") or "/"
        request = (
            f"HEAD {path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
            f"User-Agent: tlsrpt-reporter/{__version__} (check-record)\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        line = await reader.readuntil(b"\n")
    finally:
        writer.close()
        # The answer is in; a rough close changes nothing.
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    status, reason = _status_line(line)
    return ProbeResult(
        address, tls_version=version, not_after=not_after, status=status, reason=reason
    )


def _status_line(line: bytes) -> tuple[int, str]:
    """(status, reason) of an HTTP/1.x status line; ValueError when it is not one."""
    text = line.decode("latin-1").rstrip("\r\n")
    version, _, rest = text.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not (len(code) == 3 and code.isdigit()):
        raise ValueError(f"the answer is not HTTP: {_printable(text[:80])!r}")
    return int(code), _printable(reason)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError | EOFError):
        return "the server closed the connection without an HTTP answer"
    if isinstance(exc, asyncio.LimitOverrunError):
        return "the answer's first line is too long to be HTTP"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {_printable(exc.reason or str(exc))}"
    return _printable(str(exc) or type(exc).__name__)


def _printable(text: str) -> str:
    """``text`` without control characters: it comes from the remote side."""
    return "".join(ch if ch.isprintable() else "?" for ch in text).strip()
