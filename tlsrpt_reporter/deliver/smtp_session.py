"""One SMTP session to one server: connect, EHLO, STARTTLS as the hop asks, AUTH, one
transaction; every failure turned into an :class:`SmtpDeliveryError` that names the server, the
step and the reply.

The routing (relay or the recipients' MX hosts, in which order) is :mod:`.smtp`'s; this module
only talks to the one server it is given, through aiosmtplib, and never changes the message
bytes, so DKIM signatures survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from tlsrpt_reporter.deliver.addresses import IPNetwork
from tlsrpt_reporter.errors import DeliveryError

# A slow server gets at most this many timeouts for a whole session; every single step is also
# bounded by one timeout.
_SESSION_TIMEOUTS = 5
TlsMode = Literal["off", "required", "opportunistic"]
_TLS_FAILURES = (
    aiosmtplib.SMTPException,  # a non-220 reply to STARTTLS, a reset or timed-out handshake
    ssl.SSLError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True)
class SmtpSettings:
    """How to send: the ``[reporter.mail]`` transport keys (docs/operating.md)."""

    relay: str = "localhost:25"  # "host:port", "[v6-address]:port", or "direct" for MX delivery
    starttls: bool = False  # relay only: require STARTTLS with a verified certificate
    username: str = ""  # relay AUTH user; the password is read from password_file
    password_file: str = ""
    helo_name: str = ""  # default: socket.getfqdn()
    envelope_from: str = ""  # used when send() gets an empty envelope_from
    timeout: float = 60.0  # seconds, per connection step
    direct_port: int = 25  # MX port for direct delivery (tests use an ephemeral port)
    ca_file: str = ""  # CA bundle for the relay's certificate; default: the system store
    # Direct delivery: the non-public MX addresses that may be used (reporter.mail.allow_private).
    allow_private: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """A recipient the server would not take, with its reply."""

    recipient: str
    reply: str
    permanent: bool  # 5xx: retrying this recipient will not help


class SmtpDeliveryError(DeliveryError):
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
        super().__init__(message, permanent=permanent)
        self.server = server
        self.reply = reply
        self.stage = stage


#: Called with "<route> (TLS|no TLS): <reply>" (:attr:`Hop.route`; what ``smtp.SendResult``
#: reads as for one recipient, so the sender records it once) the moment a server accepts the
#: message.
OnAccepted = Callable[[str], None]


@dataclass(frozen=True)
class Job:
    """What every attempt of one send() shares; ``on_accepted`` hears of each acceptance
    before anything else is said to that server."""

    message: bytes
    sender: str
    settings: SmtpSettings
    helo: str
    on_accepted: OnAccepted | None = None


@dataclass(frozen=True)
class Hop:
    """One server to talk to, and how: TLS mode, AUTH, the CA to verify a relay with."""

    host: str
    port: int
    label: str  # names the server in messages: "relay host:port", "MX host mx.example (dom)"
    tls: TlsMode
    login: tuple[str, str] | None = None
    ca_file: str = ""
    address: str = ""  # the checked IP literal to connect to (direct delivery); "": ``host``
    relay: bool = False  # our relay, not a recipient's MX

    @property
    def route(self) -> str:
        """Where a message this server accepted went: "handed to relay host:port",
        "delivered to MX host mx.example (example.com)"."""
        return f"{'handed to' if self.relay else 'delivered to'} {self.label}"


@dataclass(frozen=True)
class Outcome:
    """What a transaction that the server accepted gave."""

    accepted: tuple[str, ...]
    refused: tuple[Refusal, ...]
    reply: str
    tls: bool


class _TlsFailed(Exception):
    """The opportunistic STARTTLS handshake failed; the session is unusable."""


async def session(job: Job, rcpts: list[str], hop: Hop) -> Outcome:
    """One delivery attempt to one server; an opportunistic TLS failure retries in plaintext."""
    try:
        return await _transaction(job, rcpts, hop, hop.tls)
    except _TlsFailed:
        # RFC 8460 §5.3: reports MUST be delivered despite TLS failures.
        return await _transaction(job, rcpts, hop, "off")


async def _transaction(job: Job, rcpts: list[str], hop: Hop, tls: TlsMode) -> Outcome:
    timeout = job.settings.timeout
    client = aiosmtplib.SMTP(
        hostname=hop.address or hop.host,
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
            # The reply to the end of DATA is the server's final answer (RFC 5321 §4.1.1.4):
            # recorded before QUIT, so a crash from here on resends nothing.
            if job.on_accepted is not None:
                tls_text = "TLS" if encrypted else "no TLS"
                job.on_accepted(f"{hop.route} ({tls_text}): {reply}")
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
    return Outcome(accepted, refused, reply, encrypted)


async def _ehlo(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        # RFC 5321 §3.2: a server that does not know EHLO still takes HELO.
        await client.helo()


async def _starttls(client: aiosmtplib.SMTP, hop: Hop, mode: TlsMode) -> None:
    if mode == "required":
        if not client.supports_extension("starttls"):
            raise SmtpDeliveryError(
                f"{hop.label} does not offer STARTTLS but relay_starttls is true; nothing was sent",
                permanent=False,
                server=hop.label,
                stage="STARTTLS",
            )
        try:
            context = ssl.create_default_context(cafile=hop.ca_file or None)
        except (OSError, ValueError) as exc:
            raise SmtpDeliveryError(
                f"cannot load the CA file {hop.ca_file!r} for {hop.label}: {exc}; fix ca_file",
                permanent=False,
                server=hop.label,
                stage="STARTTLS",
            ) from exc
        try:
            await client.starttls(tls_context=context, server_hostname=hop.host)
        except ssl.SSLCertVerificationError as exc:
            raise SmtpDeliveryError(
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


def _classify(exc: BaseException, hop: Hop, stage: str) -> SmtpDeliveryError:
    """An SmtpDeliveryError naming the server, the step and the reply; 5xx replies are permanent."""
    server = hop.label
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = [f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients]
        return SmtpDeliveryError(
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
        return SmtpDeliveryError(
            f"{hop.label} answered {reply} to {what}",
            permanent=500 <= exc.code < 600,
            server=server,
            stage=stage,
            reply=reply,
        )
    if isinstance(exc, TimeoutError):
        return SmtpDeliveryError(
            f"{hop.label} timed out during {stage}: {exc or 'no answer'}",
            permanent=False,
            server=server,
            stage=stage,
        )
    return SmtpDeliveryError(
        f"{hop.label}: {stage} failed: {exc}", permanent=False, server=server, stage=stage
    )
