"""SMTP transport of signed report mail: to a relay, or straight to the recipients' MX hosts.

The only module here that opens network connections (aiosmtplib). It takes finished message
bytes and never changes them, so DKIM signatures survive. DNS is the caller's: direct delivery
asks the ``mx_lookup`` callable it is given.

TLS rules. A relay is ours: with ``starttls`` it MUST offer STARTTLS and present a certificate
that verifies, otherwise nothing is sent. A recipient's MX is not: RFC 8460 §5.3 says reports
MUST be delivered despite TLS failures, so direct delivery uses STARTTLS when offered, verifies
nothing, and when the handshake fails it reconnects in plaintext. The message carries
``TLS-Required: No`` (RFC 8689) so that a relay also ignores MTA-STS and DANE for it.

Loop safety (RFC 8460 §5.3): these sessions are not reported to any TLSRPT collector, so the
delivery of one report never feeds the next. A relay MTA does its own accounting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiosmtplib

from tlsrpt_reporter.deliver.mail import MailCompositionError, check_address
from tlsrpt_reporter.errors import ConfigError, TlsRptError

__all__ = [
    "DeliveryError",
    "MxLookup",
    "Refusal",
    "SendResult",
    "SmtpSettings",
    "check_settings",
    "parse_relay",
    "send",
]

#: Returns the MX host names of a domain in preference order; ``[]`` when it has no MX records
#: (the domain itself is then tried, RFC 5321 §5.1), ``["."]`` for a null MX (RFC 7505).
MxLookup = Callable[[str], Awaitable[list[str]]]

# A slow server gets at most this many timeouts for a whole session; every single step is also
# bounded by one timeout.
_SESSION_TIMEOUTS = 5
_HELO = re.compile(r"[A-Za-z0-9._:\[\]-]+")
_TlsMode = Literal["off", "required", "opportunistic"]
_TLS_FAILURES = (
    aiosmtplib.SMTPException,  # a non-220 reply to STARTTLS, a reset or timed-out handshake
    ssl.SSLError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True)
class SmtpSettings:
    """How to send: the ``[reporter.mail]`` transport keys (shared/INTERFACE.md)."""

    relay: str = "localhost:25"  # "host:port", "[v6-address]:port", or "direct" for MX delivery
    starttls: bool = False  # relay only: require STARTTLS with a verified certificate
    username: str = ""  # relay AUTH user; the password is read from password_file
    password_file: str = ""
    helo_name: str = ""  # default: socket.getfqdn()
    envelope_from: str = ""  # used when send() gets an empty envelope_from
    timeout: float = 60.0  # seconds, per connection step
    direct_port: int = 25  # MX port for direct delivery (tests use an ephemeral port)
    ca_file: str = ""  # CA bundle for the relay's certificate; default: the system store


@dataclass(frozen=True)
class Refusal:
    """A recipient the server would not take, with its reply."""

    recipient: str
    reply: str
    permanent: bool  # 5xx: retrying this recipient will not help


@dataclass(frozen=True)
class SendResult:
    """What happened to a message that at least one recipient's server accepted."""

    accepted: tuple[str, ...]
    refused: tuple[Refusal, ...]
    reply: str  # the server's reply to the end of the data, e.g. "2.0.0 Ok: queued as 4Xz"
    route: str  # "handed to relay host:port" or "delivered to MX host mx.example.com"
    tls: bool  # whether every accepting session was encrypted

    def __str__(self) -> str:
        text = f"{self.route} ({'TLS' if self.tls else 'no TLS'}): {self.reply}"
        if self.refused:
            text += "; refused: " + "; ".join(f"{r.recipient} ({r.reply})" for r in self.refused)
        return text


class DeliveryError(TlsRptError):
    """A message could not be handed over; ``permanent`` when retrying cannot help (5xx).

    ``server`` names the server ("relay host:port", "MX host mx.example.com (example.com)"),
    ``stage`` the step that failed ("connect", "EHLO", "STARTTLS", "AUTH", "transaction"),
    ``reply`` the server's reply when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        server: str = "",
        reply: str = "",
        stage: str = "",
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.server = server
        self.reply = reply
        self.stage = stage


def parse_relay(value: str) -> tuple[str, int] | None:
    """``(host, port)`` of a relay setting, ``None`` for ``"direct"``; ConfigError when bad."""
    if value == "direct":
        return None
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([A-Za-z0-9._-]+)(?::(\d+))?", value)
    if not match:
        raise ConfigError(
            f"reporter.mail.relay = {value!r}: write 'host:port' (IPv6: '[addr]:port') or 'direct'"
        )
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4) or 25)
    if match.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"reporter.mail.relay = {value!r}: not an IPv6 address") from None
    if not 0 < port < 65536:
        raise ConfigError(f"reporter.mail.relay = {value!r}: port {port} is out of range")
    return host, port


def check_settings(settings: SmtpSettings) -> None:
    """Raise ConfigError naming the key when the settings cannot work."""
    relay = parse_relay(settings.relay)
    if not settings.timeout > 0:
        raise ConfigError(f"SMTP timeout {settings.timeout!r} must be a positive number of seconds")
    if not 0 < settings.direct_port < 65536:
        raise ConfigError(f"direct delivery port {settings.direct_port} is out of range")
    if settings.helo_name and not _HELO.fullmatch(settings.helo_name):
        raise ConfigError(
            f"reporter.mail.helo_name = {settings.helo_name!r}: give a host name or an address "
            "literal, without spaces"
        )
    if settings.envelope_from:
        _check_sender(settings.envelope_from)
    if settings.username:
        if relay is None:
            raise ConfigError("relay_username is set but relay is 'direct': MX hosts take no AUTH")
        if not settings.password_file:
            raise ConfigError(
                "relay_username is set but relay_password_file is not: name the file that holds "
                "the password"
            )
        if not settings.starttls and not _is_loopback(relay[0]):
            raise ConfigError(
                f"relay_username is set for relay {relay[0]} but relay_starttls is false: the "
                "password would cross the network in clear; set relay_starttls = true"
            )


async def send(
    message: bytes,
    envelope_from: str,
    recipients: Sequence[str],
    settings: SmtpSettings,
    mx_lookup: MxLookup | None = None,
) -> SendResult:
    """Hand ``message`` to the relay, or deliver it to each recipient domain's MX hosts.

    ``envelope_from`` (else ``settings.envelope_from``) is the MAIL FROM address; when both are
    empty the null reverse-path ``<>`` is used. Returns a :class:`SendResult` when at least one
    recipient was accepted; raises :class:`DeliveryError` (``permanent`` only when every failure
    was a 5xx reply) when none was, and ConfigError when the settings are unusable.
    """
    check_settings(settings)
    sender = envelope_from or settings.envelope_from
    if sender:
        _check_sender(sender)
    if not recipients:
        raise DeliveryError("no recipients to send the report to", permanent=True)
    for rcpt in recipients:
        try:
            check_address(rcpt, "recipient")
        except MailCompositionError as exc:
            raise DeliveryError(str(exc), permanent=True) from None
    helo = settings.helo_name or await asyncio.wait_for(
        asyncio.to_thread(socket.getfqdn), settings.timeout
    )
    relay = parse_relay(settings.relay)
    job = _Job(message, sender, settings, helo)
    if relay is not None:
        return await _send_relay(job, list(recipients), relay)
    if mx_lookup is None:
        raise ConfigError("relay is 'direct' but no MX lookup was given to deliver with")
    return await _send_direct(job, list(recipients), mx_lookup)


@dataclass(frozen=True)
class _Job:
    """What every attempt of one send() shares."""

    message: bytes
    sender: str
    settings: SmtpSettings
    helo: str


@dataclass(frozen=True)
class _Hop:
    host: str
    port: int
    label: str  # names the server in messages: "relay host:port", "MX host mx.example (dom)"
    tls: _TlsMode
    login: tuple[str, str] | None = None
    ca_file: str = ""


@dataclass(frozen=True)
class _Outcome:
    accepted: tuple[str, ...]
    refused: tuple[Refusal, ...]
    reply: str
    tls: bool


class _TlsFailed(Exception):
    """The opportunistic STARTTLS handshake failed; the session is unusable."""


async def _send_relay(job: _Job, recipients: list[str], relay: tuple[str, int]) -> SendResult:
    host, port = relay
    settings = job.settings
    login = None
    if settings.username:
        login = (settings.username, _read_password(settings.password_file))
    mode: _TlsMode = "required" if settings.starttls else "off"
    hop = _Hop(host, port, f"relay {host}:{port}", mode, login, settings.ca_file)
    outcome = await _session(job, recipients, hop)
    return SendResult(
        outcome.accepted, outcome.refused, outcome.reply, f"handed to {hop.label}", outcome.tls
    )


async def _send_direct(job: _Job, recipients: list[str], mx_lookup: MxLookup) -> SendResult:
    by_domain: dict[str, list[str]] = {}
    for rcpt in recipients:
        by_domain.setdefault(rcpt.rpartition("@")[2].lower(), []).append(rcpt)
    accepted: list[str] = []
    refused: list[Refusal] = []
    replies: list[str] = []
    routes: list[str] = []
    all_tls = True
    failures: list[DeliveryError] = []
    for domain, rcpts in by_domain.items():
        try:
            hop, outcome = await _deliver_to_domain(job, domain, rcpts, mx_lookup)
        except DeliveryError as exc:
            failures.append(exc)
            refused += [Refusal(r, str(exc), exc.permanent) for r in rcpts]
            continue
        accepted += outcome.accepted
        refused += outcome.refused
        replies.append(outcome.reply)
        routes.append(f"delivered to {hop.label}")
        all_tls = all_tls and outcome.tls
    if not accepted:
        if len(failures) == 1:
            raise failures[0]
        raise DeliveryError(
            "; ".join(str(f) for f in failures),
            permanent=all(f.permanent for f in failures),
        )
    return SendResult(
        tuple(accepted), tuple(refused), "; ".join(replies), "; ".join(routes), all_tls
    )


async def _deliver_to_domain(
    job: _Job, domain: str, rcpts: list[str], mx_lookup: MxLookup
) -> tuple[_Hop, _Outcome]:
    hosts = await _mx_hosts(domain, mx_lookup, job.settings.timeout)
    errors: list[DeliveryError] = []
    for host in hosts:
        hop = _Hop(host, job.settings.direct_port, f"MX host {host} ({domain})", "opportunistic")
        try:
            return hop, await _session(job, rcpts, hop)
        except DeliveryError as exc:
            errors.append(exc)
            # RFC 5321 §5.1: another MX is worth trying after a connection failure or a 4xx;
            # a 5xx to the transaction is the domain's final answer.
            if exc.permanent and exc.stage == "transaction":
                break
    raise DeliveryError(
        f"no MX host of {domain} took the report: " + "; ".join(str(e) for e in errors),
        permanent=all(e.permanent for e in errors),
        server=errors[-1].server,
        reply=errors[-1].reply,
        stage=errors[-1].stage,
    ) from errors[-1]  # the cause tells error_kinds a timeout from a refused connection


async def _mx_hosts(domain: str, mx_lookup: MxLookup, timeout: float) -> list[str]:
    try:
        hosts = await asyncio.wait_for(mx_lookup(domain), timeout)
    except DeliveryError:
        raise
    except TimeoutError:
        raise DeliveryError(f"MX lookup for {domain} timed out", permanent=False) from None
    except Exception as exc:
        raise DeliveryError(f"MX lookup for {domain} failed: {exc}", permanent=False) from exc
    # The lookup (dns.Resolver.mx_hosts) already applies RFC 5321 §5.1's implicit MX, so an
    # empty answer means a null MX (RFC 7505) or no such domain: nowhere to deliver.
    names = [n for n in (h.rstrip(".") for h in hosts) if n]
    if not names:
        raise DeliveryError(
            f"{domain} has no mail host (null MX or no such domain)", permanent=True
        )
    return names


async def _session(job: _Job, rcpts: list[str], hop: _Hop) -> _Outcome:
    """One delivery attempt to one server; an opportunistic TLS failure retries in plaintext."""
    try:
        return await _transaction(job, rcpts, hop, hop.tls)
    except _TlsFailed:
        # RFC 8460 §5.3: reports MUST be delivered despite TLS failures.
        return await _transaction(job, rcpts, hop, "off")


async def _transaction(job: _Job, rcpts: list[str], hop: _Hop, tls: _TlsMode) -> _Outcome:
    timeout = job.settings.timeout
    client = aiosmtplib.SMTP(
        hostname=hop.host,
        port=hop.port,
        local_hostname=job.helo,
        timeout=timeout,
        start_tls=False,  # STARTTLS is done below, where its failure can be handled
    )
    stage = "connect"
    try:
        async with asyncio.timeout(timeout * _SESSION_TIMEOUTS):
            await client.connect()
            stage = "EHLO"
            await _ehlo(client)
            offered = client.supports_extension("starttls")
            encrypted = tls == "required" or (tls == "opportunistic" and offered)
            if encrypted:
                stage = "STARTTLS"
                await _starttls(client, hop, tls)
                stage = "EHLO"
                await _ehlo(client)  # RFC 3207 §4.2: extensions are learnt again after TLS
            if hop.login:
                stage = "AUTH"
                await client.login(*hop.login)
            stage = "transaction"
            errors, reply = await client.sendmail(job.sender, rcpts, job.message)
            # The message was accepted: a lost goodbye changes nothing.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
    except _TlsFailed:
        raise
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise _classify(exc, hop, stage) from exc
    finally:
        client.close()
    # Some recipients may have been refused while others were accepted (RFC 5321 §3.3).
    refused = tuple(
        Refusal(rcpt, f"{resp.code} {resp.message}", resp.code >= 500)
        for rcpt, resp in errors.items()
    )
    accepted = tuple(r for r in rcpts if r not in errors)
    return _Outcome(accepted, refused, reply, encrypted)


async def _ehlo(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        # RFC 5321 §3.2: a server that does not know EHLO still takes HELO.
        await client.helo()


async def _starttls(client: aiosmtplib.SMTP, hop: _Hop, mode: _TlsMode) -> None:
    if mode == "required":
        if not client.supports_extension("starttls"):
            raise DeliveryError(
                f"{hop.label} does not offer STARTTLS but relay_starttls is true; nothing was sent",
                permanent=False,
                server=hop.label,
                stage="STARTTLS",
            )
        try:
            context = ssl.create_default_context(cafile=hop.ca_file or None)
        except (OSError, ValueError) as exc:
            raise DeliveryError(
                f"cannot load the CA file {hop.ca_file!r} for {hop.label}: {exc}; fix ca_file",
                permanent=False,
                server=hop.label,
                stage="STARTTLS",
            ) from exc
        try:
            await client.starttls(tls_context=context, server_hostname=hop.host)
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"{hop.label}: TLS certificate not accepted ({exc.verify_message}); nothing was "
                "sent. Fix the relay's certificate or set ca_file to the CA that signed it",
                permanent=False,
                server=hop.label,
                stage="STARTTLS",
            ) from exc
        return
    # Opportunistic: RFC 8460 §5.3 (and RFC 7435) — any certificate will do, and a failed
    # handshake means plaintext rather than no report.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        await client.starttls(tls_context=context, server_hostname=hop.host)
    except _TLS_FAILURES as exc:
        raise _TlsFailed(str(exc)) from exc


def _classify(exc: BaseException, hop: _Hop, stage: str) -> DeliveryError:
    """A DeliveryError naming the server, the step and the reply; 5xx replies are permanent."""
    server = hop.label
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = [f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients]
        return DeliveryError(
            f"{hop.label} refused every recipient: " + "; ".join(replies),
            permanent=all(r.code >= 500 for r in exc.recipients),
            server=server,
            stage=stage,
            reply="; ".join(replies),
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = f"{exc.code} {exc.message}"
        what = {
            aiosmtplib.SMTPSenderRefused: "MAIL FROM",
            aiosmtplib.SMTPDataError: "the message data",
            aiosmtplib.SMTPAuthenticationError: "AUTH",
            aiosmtplib.SMTPHeloError: "EHLO/HELO",
        }.get(type(exc), stage)
        return DeliveryError(
            f"{hop.label} answered {reply} to {what}",
            permanent=500 <= exc.code < 600,
            server=server,
            stage=stage,
            reply=reply,
        )
    if isinstance(exc, TimeoutError):
        return DeliveryError(
            f"{hop.label} timed out during {stage}: {exc or 'no answer'}",
            permanent=False,
            server=server,
            stage=stage,
        )
    return DeliveryError(
        f"{hop.label}: {stage} failed: {exc}", permanent=False, server=server, stage=stage
    )


def _read_password(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DeliveryError(
            f"cannot read the relay password file {path}: {reason}; fix relay_password_file or "
            "make the file readable by the reporter's user",
            permanent=False,
        ) from None
    # A file written by `echo` ends with a newline that is not part of the password.
    password = text.rstrip("\r\n")
    if not password:
        raise DeliveryError(f"the relay password file {path} is empty", permanent=False)
    return password


def _check_sender(sender: str) -> None:
    try:
        check_address(sender, "envelope sender")
    except MailCompositionError as exc:
        raise ConfigError(f"{exc}; fix reporter.mail.envelope_from (or from)") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
