"""Delivery of a report by HTTPS POST (RFC 8460 §5.4), guarded against SSRF and DNS rebinding.

This module owns one delivery attempt to one ``https:`` rua: parse the URI, resolve its host
through the caller's resolver, refuse non-global addresses the operator did not allow, then POST
to an address that passed the check while TLS (SNI, certificate name) and ``Host:`` use the
name from the URI.

It must not resolve names itself (a second lookup could answer differently: DNS rebinding), follow
redirects, take proxies or credentials from the environment, or retry: retries and their backoff
belong to the scheduler (RFC 8460 §5.5), which reads :attr:`HttpsDeliveryError.permanent`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from tlsrpt_reporter import __version__
from tlsrpt_reporter.config.schema import HttpsSettings
from tlsrpt_reporter.deliver import addresses
from tlsrpt_reporter.deliver.addresses import IPAddress
from tlsrpt_reporter.deliver.https_client import client_for
from tlsrpt_reporter.errors import DeliveryError, TlsRptError

Resolve = Callable[[str], Awaitable[list[IPAddress]]]
#: Called with "HTTP <status> <reason> from <url> at <address>" when a 2xx status line arrives.
OnAccepted = Callable[[str], None]

# RFC 8460 §5.4: the gzip-compressed report is the POST body, with this media type.
CONTENT_TYPE = "application/tlsrpt+gzip"

# Each phase (connect, write, read) is bounded by ``timeout``; the whole exchange, every address
# tried included, by this many times it, so a server trickling bytes cannot hold a sender forever.
TOTAL_TIMEOUT_FACTOR = 3

# How much of a refusal's body goes into the error message (it ends up in logs and the state db).
_ERROR_BODY_CHARS = 200


class HttpsDeliveryError(DeliveryError):
    """An HTTPS delivery attempt failed.

    ``permanent`` tells the scheduler not to retry: the destination can never be used as it is
    written (a malformed URI, an address the operator does not allow). Everything else, HTTP
    errors, timeouts and TLS failures included, is worth retrying (RFC 8460 §5.5).
    ``retry_after`` is the answer's Retry-After header as sent (the scheduler judges it with
    ``deliver.plan.retry_after``).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        address: str = "",
        status: int | None = None,
        permanent: bool = False,
        retry_after: str = "",
    ) -> None:
        super().__init__(message, permanent=permanent)
        self.url = url
        self.address = address
        self.status = status
        self.retry_after = retry_after


class InvalidReportUrl(HttpsDeliveryError):
    """The rua is not an ``https:`` URI we may POST to; permanent."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"cannot POST a report to {url!r}: {problem}", url=url, permanent=True)


class ForbiddenAddress(HttpsDeliveryError):
    """The rua's host resolves to an address that is not global and not allowed; permanent.

    A TLS-RPT record can point a sender anywhere (RFC 8460 §7): without this check any domain
    could make us POST into our own network.
    """

    def __init__(self, message: str, *, url: str = "", address: str = "") -> None:
        super().__init__(message, url=url, address=address, permanent=True)


@dataclass(frozen=True)
class ReportUrl:
    """A parsed ``https:`` rua: the name for TLS and ``Host:``, and where to connect."""

    url: str
    host: str  # A-label or IP literal, lower case, no trailing dot, no brackets
    port: int
    ip_literal: IPAddress | None
    parsed: httpx.URL

    @property
    def host_header(self) -> str:
        """The ``Host:`` value: the name, with the port when it is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"


@dataclass(frozen=True)
class PostResult:
    """A POST the receiver accepted (a 2xx answer, RFC 8460 §5.4)."""

    url: str
    address: str
    status: int
    reason: str
    body: bytes  # at most HttpsSettings.max_response_bytes of it
    truncated: bool

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.reason} from {self.url} at {self.address}".strip()


def parse_report_url(url: str) -> ReportUrl:
    """Parse an ``https:`` rua; InvalidReportUrl (permanent) when it cannot be used."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidReportUrl(url, f"malformed URI ({exc})") from None
    # RFC 8460 §3: only the https scheme is delivered by POST.
    if parsed.scheme != "https":
        raise InvalidReportUrl(url, f"scheme {parsed.scheme!r} is not https")
    if parsed.userinfo:
        # Credentials in a record published in DNS are nobody's secret; refusing them also
        # keeps "https://expected@elsewhere/" from misleading whoever reads the logs.
        raise InvalidReportUrl(url, "user information (user@ or user:password@) is not allowed")
    host = parsed.raw_host.decode("ascii").lower().removesuffix(".")
    if not host:
        raise InvalidReportUrl(url, "no host name")
    port = 443 if parsed.port is None else parsed.port
    if not 0 < port < 65536:
        raise InvalidReportUrl(url, f"port {port} is out of range")
    try:
        ip_literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        ip_literal = None
    return ReportUrl(url=url, host=host, port=port, ip_literal=ip_literal, parsed=parsed)


def check_address(ip: IPAddress, settings: HttpsSettings) -> None:
    """Raise ForbiddenAddress unless ``ip`` is global or inside ``allow_private``
    (:func:`tlsrpt_reporter.deliver.addresses.refusal`; RFC 8460 §7)."""
    why = addresses.refusal(ip, settings.allow_private, "reporter.https.allow_private")
    if why is not None:
        raise ForbiddenAddress(why, address=str(ip))


async def checked_addresses(
    target: ReportUrl, settings: HttpsSettings, resolve: Resolve
) -> list[IPAddress]:
    """The addresses of ``target`` that pass :func:`check_address`, in the resolver's order.

    The host is resolved once, here; the connection later goes to one of these addresses and
    never to the name, so a second DNS answer cannot swap in an internal address (rebinding).
    """
    if target.ip_literal is not None:
        candidates: list[IPAddress] = [target.ip_literal]
    else:
        try:
            candidates = list(await resolve(target.host))
        except (TlsRptError, OSError) as exc:
            raise HttpsDeliveryError(
                f"POST {target.url}: cannot resolve {target.host}: {exc}", url=target.url
            ) from exc
        if not candidates:
            raise HttpsDeliveryError(
                f"POST {target.url}: {target.host} has no address", url=target.url
            )
    allowed, refusals = split_addresses(candidates, settings)
    if not allowed:
        raise ForbiddenAddress(
            f"POST {target.url} refused: {'; '.join(refusals)}",
            url=target.url,
            address=", ".join(str(ip) for ip in candidates),
        )
    return allowed


async def post_report(
    url: str,
    body: bytes,
    settings: HttpsSettings,
    resolve: Resolve,
    *,
    on_accepted: OnAccepted | None = None,
    context: ssl.SSLContext | None = None,
) -> PostResult:
    """POST the gzip report ``body`` to the https rua ``url`` (RFC 8460 §5.4).

    ``resolve`` maps a host name to its addresses (the project's DNS resolver; a TlsRptError or
    OSError it raises becomes a retryable HttpsDeliveryError). Addresses that pass the check are
    tried in order until one accepts a connection. Returns the 2xx answer; raises
    HttpsDeliveryError for anything else: InvalidReportUrl and ForbiddenAddress are permanent,
    the rest retryable. ``on_accepted`` is called as soon as a 2xx status line arrives, before
    the answer's body is read: what goes wrong after that (a body cut off) still raises, though
    the receiver has the report. ``context``: the TLS context to use, made by
    :func:`.https_client.ssl_context` from ``settings`` (one is made when it is None); the
    sender makes one per pass.
    """
    target = parse_report_url(url)
    addresses = await checked_addresses(target, settings, resolve)
    total = settings.timeout * TOTAL_TIMEOUT_FACTOR
    try:
        async with asyncio.timeout(total):
            return await _post_first_reachable(
                target, addresses, body, settings, on_accepted=on_accepted, context=context
            )
    except TimeoutError:
        raise HttpsDeliveryError(
            f"POST {url}: no complete answer within {total:g}s (reporter.https.timeout x "
            f"{TOTAL_TIMEOUT_FACTOR})",
            url=url,
            address=", ".join(str(ip) for ip in addresses),
        ) from None


class _ConnectFailed(HttpsDeliveryError):
    """Nothing was sent to this address; the next one may be tried."""


async def _post_first_reachable(
    target: ReportUrl,
    addresses: list[IPAddress],
    body: bytes,
    settings: HttpsSettings,
    *,
    on_accepted: OnAccepted | None,
    context: ssl.SSLContext | None,
) -> PostResult:
    failures: list[_ConnectFailed] = []
    for ip in addresses:
        try:
            return await _post_to(
                target, ip, body, settings, on_accepted=on_accepted, context=context
            )
        except _ConnectFailed as exc:
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    raise HttpsDeliveryError(
        "; ".join(str(exc) for exc in failures),
        url=target.url,
        address=", ".join(exc.address for exc in failures),
    )


def split_addresses(
    candidates: Sequence[IPAddress], settings: HttpsSettings
) -> tuple[list[IPAddress], list[str]]:
    """The addresses a report may be POSTed to, and why each other one is refused (RFC 8460
    §7: a record can point anywhere, private networks included)."""
    allowed: list[IPAddress] = []
    refusals: list[str] = []
    for ip in candidates:
        try:
            check_address(ip, settings)
        except ForbiddenAddress as exc:
            refusals.append(str(exc))
        else:
            allowed.append(ip)
    return allowed, refusals


async def _post_to(
    target: ReportUrl,
    ip: IPAddress,
    body: bytes,
    settings: HttpsSettings,
    *,
    on_accepted: OnAccepted | None = None,
    context: ssl.SSLContext | None = None,
) -> PostResult:
    address = str(ip)
    where = f"POST {target.url} (to {address})"
    # The request goes to the checked address literally; the name travels in SNI and Host only.
    try:
        request_url = target.parsed.copy_with(host=address, port=target.port)
    except httpx.InvalidURL as exc:  # e.g. an allow-listed link-local address with a zone
        raise HttpsDeliveryError(
            f"{where}: cannot address {address}: {exc}", url=target.url
        ) from None
    headers = {
        "Host": target.host_header,
        "Content-Type": CONTENT_TYPE,  # RFC 8460 §5.4
        # identity: a compressed answer could expand far beyond max_response_bytes.
        "Accept-Encoding": "identity",
        "User-Agent": f"tlsrpt-reporter/{__version__}",
    }
    # The certificate is checked against the SNI name; an IP-literal rua sends no SNI and is
    # checked against the address, as ssl does for an IP server_hostname.
    extensions = {} if target.ip_literal is not None else {"sni_hostname": target.host}
    async with client_for(settings, context) as client:
        try:
            async with client.stream(
                "POST", request_url, content=body, headers=headers, extensions=extensions
            ) as response:
                # RFC 8460 §5.4: the 2xx status is the receiver's final answer; recorded before
                # the body is read, so a crash or a trickled body cannot cause a resend.
                if on_accepted is not None and 200 <= response.status_code < 300:
                    reason = _printable(response.reason_phrase)
                    on_accepted(
                        f"HTTP {response.status_code} {reason} from {target.url} at {address}"
                    )
                data, truncated = await _read_capped(response, settings.max_response_bytes)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _ConnectFailed(
                f"{where}: {_describe(exc, settings)}", url=target.url, address=address
            ) from exc
        except httpx.HTTPError as exc:
            raise HttpsDeliveryError(
                f"{where}: {_describe(exc, settings)}", url=target.url, address=address
            ) from exc
    reason = _printable(response.reason_phrase)
    # RFC 8460 §5.4: only a 2xx answer is success; a redirect is not followed.
    if not 200 <= response.status_code < 300:
        snippet = _printable(data[:_ERROR_BODY_CHARS].decode("utf-8", "replace"))
        location = response.headers.get("Location")
        detail = f" (redirect to {_printable(location)}, not followed)" if location else ""
        raise HttpsDeliveryError(
            f"{where}: HTTP {response.status_code} {reason}{detail}"
            + (f": {snippet}" if snippet else ""),
            url=target.url,
            address=address,
            status=response.status_code,
            retry_after=_printable(response.headers.get("Retry-After", ""))[:_ERROR_BODY_CHARS],
        )
    return PostResult(
        url=target.url,
        address=address,
        status=response.status_code,
        reason=reason,
        body=data,
        truncated=truncated,
    )


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether there was more (then left unread)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        room = limit - size
        if len(chunk) > room:
            chunks.append(chunk[:room])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _describe(exc: httpx.HTTPError, settings: HttpsSettings) -> str:
    """The failure in an operator's words (httpx timeouts often have an empty message)."""
    phases = {
        httpx.ConnectTimeout: "connecting (TCP or TLS handshake)",
        httpx.WriteTimeout: "sending the report",
        httpx.ReadTimeout: "waiting for the answer",
        httpx.PoolTimeout: "waiting for a connection slot",
    }
    for kind, phase in phases.items():
        if isinstance(exc, kind):
            return f"timed out after {settings.timeout:g}s {phase} (reporter.https.timeout)"
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS certificate not accepted: {text}"
    return text


def _printable(text: str) -> str:
    """``text`` without control characters, for a log line the receiver cannot forge."""
    return "".join(ch if ch.isprintable() else "?" for ch in text).strip()
