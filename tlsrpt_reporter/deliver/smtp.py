"""SMTP transport of signed report mail: to a relay, or straight to the recipients' MX hosts.

The only module here that opens network connections (aiosmtplib). It takes finished message
bytes and never changes them, so DKIM signatures survive. DNS is the caller's: direct delivery
asks the ``mx_lookup`` and ``resolve`` callables it is given.

Hostile DNS (docs/sender-rules.md §1): anyone can publish MX records, so each MX host name is
checked before use, its addresses must be public unless listed in ``reporter.mail.allow_private``
(:func:`.addresses.refusal`), and the session connects to the address that passed, not the name.

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
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tlsrpt_reporter.deliver import addresses
from tlsrpt_reporter.deliver.addresses import IPAddress
from tlsrpt_reporter.deliver.mail import MailCompositionError, check_address
from tlsrpt_reporter.deliver.smtp_session import (
    Hop,
    Job,
    OnAccepted,
    Outcome,
    Refusal,
    SmtpDeliveryError,
    SmtpSettings,
    TlsMode,
    session,
)
from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import ConfigError

__all__ = [
    "MxLookup",
    "OnAccepted",
    "Refusal",
    "Resolve",
    "SendResult",
    "SmtpDeliveryError",
    "SmtpSettings",
    "check_settings",
    "parse_relay",
    "send",
]

#: Returns the MX host names of a domain in preference order; ``[]`` when it has no MX records
#: (the domain itself is then tried, RFC 5321 §5.1), ``["."]`` for a null MX (RFC 7505).
MxLookup = Callable[[str], Awaitable[list[str]]]
#: Returns the addresses of a host name (the project's resolver, ``Resolver.addresses``).
Resolve = Callable[[str], Awaitable[list[IPAddress]]]
_ALLOW_KEY = "reporter.mail.allow_private"

_HELO = re.compile(r"[A-Za-z0-9._:\[\]-]+")


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
    *,
    resolve: Resolve | None = None,
    on_accepted: OnAccepted | None = None,
) -> SendResult:
    """Hand ``message`` to the relay, or deliver it to each recipient domain's MX hosts.

    ``envelope_from`` (else ``settings.envelope_from``) is the MAIL FROM address; when both are
    empty the null reverse-path ``<>`` is used. Returns a :class:`SendResult` when at least one
    recipient was accepted; raises :class:`SmtpDeliveryError` (``permanent`` only when every failure
    was a 5xx reply) when none was, and ConfigError when the settings are unusable. Direct
    delivery needs ``mx_lookup`` and ``resolve`` (an MX given as an IP literal needs no lookup).
    ``on_accepted`` is called the moment a server accepts the message, before QUIT.
    """
    check_settings(settings)
    sender = envelope_from or settings.envelope_from
    if sender:
        _check_sender(sender)
    if not recipients:
        raise SmtpDeliveryError("no recipients to send the report to", permanent=True)
    for rcpt in recipients:
        try:
            check_address(rcpt, "recipient")
        except MailCompositionError as exc:
            raise SmtpDeliveryError(str(exc), permanent=True) from None
    helo = settings.helo_name or await asyncio.wait_for(
        asyncio.to_thread(socket.getfqdn), settings.timeout
    )
    relay = parse_relay(settings.relay)
    job = Job(message, sender, settings, helo, on_accepted)
    if relay is not None:
        return await _send_relay(job, list(recipients), relay)
    if mx_lookup is None:
        raise ConfigError("relay is 'direct' but no MX lookup was given to deliver with")
    return await _send_direct(job, list(recipients), mx_lookup, resolve)


async def _send_relay(job: Job, recipients: list[str], relay: tuple[str, int]) -> SendResult:
    host, port = relay
    settings = job.settings
    login = None
    if settings.username:
        login = (settings.username, _read_password(settings.password_file))
    mode: TlsMode = "required" if settings.starttls else "off"
    hop = Hop(host, port, f"relay {host}:{port}", mode, login, settings.ca_file, relay=True)
    outcome = await session(job, recipients, hop)
    return SendResult(outcome.accepted, outcome.refused, outcome.reply, hop.route, outcome.tls)


async def _send_direct(
    job: Job, recipients: list[str], mx_lookup: MxLookup, resolve: Resolve | None
) -> SendResult:
    by_domain: dict[str, list[str]] = {}
    for rcpt in recipients:
        by_domain.setdefault(rcpt.rpartition("@")[2].lower(), []).append(rcpt)
    accepted: list[str] = []
    refused: list[Refusal] = []
    replies: list[str] = []
    routes: list[str] = []
    all_tls = True
    failures: list[SmtpDeliveryError] = []
    for domain, rcpts in by_domain.items():
        try:
            hop, outcome = await _deliver_to_domain(job, domain, rcpts, mx_lookup, resolve)
        except SmtpDeliveryError as exc:
            failures.append(exc)
            refused += [Refusal(r, str(exc), exc.permanent) for r in rcpts]
            continue
        accepted += outcome.accepted
        refused += outcome.refused
        replies.append(outcome.reply)
        routes.append(hop.route)
        all_tls = all_tls and outcome.tls
    if not accepted:
        if len(failures) == 1:
            raise failures[0]
        raise SmtpDeliveryError(
            "; ".join(str(f) for f in failures),
            permanent=all(f.permanent for f in failures),
        )
    return SendResult(
        tuple(accepted), tuple(refused), "; ".join(replies), "; ".join(routes), all_tls
    )


async def _deliver_to_domain(
    job: Job, domain: str, rcpts: list[str], mx_lookup: MxLookup, resolve: Resolve | None
) -> tuple[Hop, Outcome]:
    hosts = await _mx_hosts(domain, mx_lookup, job.settings.timeout)
    errors: list[SmtpDeliveryError] = []
    for host in hosts:
        label = f"MX host {host} ({domain})"
        try:
            ips = await _mx_addresses(host, label, resolve, job.settings)
        except SmtpDeliveryError as exc:
            errors.append(exc)
            continue
        for ip in ips:
            hop = Hop(host, job.settings.direct_port, label, "opportunistic", address=str(ip))
            try:
                return hop, await session(job, rcpts, hop)
            except SmtpDeliveryError as exc:
                errors.append(exc)
                # RFC 5321 §5.1: another MX is worth trying after a connection failure or a
                # 4xx; a 5xx to the transaction is the domain's final answer.
                if exc.permanent and exc.stage == "transaction":
                    break
        if errors and errors[-1].permanent and errors[-1].stage == "transaction":
            break
    raise SmtpDeliveryError(
        f"no MX host of {domain} took the report: " + "; ".join(str(e) for e in errors),
        permanent=all(e.permanent for e in errors),
        server=errors[-1].server,
        reply=errors[-1].reply,
        stage=errors[-1].stage,
    ) from errors[-1]  # the cause tells error_kinds a timeout from a refused connection


async def _mx_hosts(domain: str, mx_lookup: MxLookup, timeout: float) -> list[str]:
    try:
        hosts = await asyncio.wait_for(mx_lookup(domain), timeout)
    except SmtpDeliveryError:
        raise
    except TimeoutError:
        raise SmtpDeliveryError(f"MX lookup for {domain} timed out", permanent=False) from None
    except Exception as exc:
        raise SmtpDeliveryError(f"MX lookup for {domain} failed: {exc}", permanent=False) from exc
    # The lookup (dns.Resolver.mx_hosts) already applies RFC 5321 §5.1's implicit MX, so an
    # empty answer means a null MX (RFC 7505) or no such domain: nowhere to deliver.
    names = [n for n in (h.rstrip(".") for h in hosts) if n]
    if not names:
        raise SmtpDeliveryError(
            f"{domain} has no mail host (null MX or no such domain)", permanent=True
        )
    return names


async def _mx_addresses(
    host: str, label: str, resolve: Resolve | None, settings: SmtpSettings
) -> list[IPAddress]:
    """The addresses of MX ``host`` that may be used; SmtpDeliveryError (stage "connect")
    when the name is invalid, does not resolve, or every address is refused."""

    def fail(why: str, permanent: bool) -> SmtpDeliveryError:
        return SmtpDeliveryError(
            f"{label}: {why}", permanent=permanent, server=label, stage="connect"
        )

    found = await _lookup(host, resolve, settings.timeout, fail)
    reasons = [addresses.refusal(ip, settings.allow_private, _ALLOW_KEY) for ip in found]
    allowed = [ip for ip, why in zip(found, reasons, strict=True) if why is None]
    if not allowed:
        raise fail("refused: " + "; ".join(why for why in reasons if why), True)
    return allowed


async def _lookup(
    host: str,
    resolve: Resolve | None,
    timeout: float,
    fail: Callable[[str, bool], SmtpDeliveryError],
) -> list[IPAddress]:
    if _is_ip(host):
        return [ipaddress.ip_address(host)]
    try:
        name = normalize_domain(host)
    except ValueError as exc:
        # Any domain can publish any MX name: a bad one fails this host, nothing else.
        raise fail(f"not a valid host name ({exc})", True) from None
    if resolve is None:
        raise ConfigError("relay is 'direct' but no address lookup was given to deliver with")
    try:
        found = list(await asyncio.wait_for(resolve(name), timeout))
    except TimeoutError:
        raise fail("address lookup timed out", False) from None
    except Exception as exc:  # the resolver's DnsError, or anything else: try again later
        raise fail(f"address lookup failed: {exc}", False) from None
    if not found:
        raise fail("the name has no address", True)
    return found


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _read_password(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SmtpDeliveryError(
            f"cannot read the relay password file {path}: {reason}; fix relay_password_file or "
            "make the file readable by the reporter's user",
            permanent=False,
        ) from None
    # A file written by `echo` ends with a newline that is not part of the password.
    password = text.rstrip("\r\n")
    if not password:
        raise SmtpDeliveryError(f"the relay password file {path} is empty", permanent=False)
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
