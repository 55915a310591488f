"""SMTP delivery against a real aiosmtpd server on loopback: relay, STARTTLS, AUTH, direct MX."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rigs.smtpserver import HOST, SmtpServer

from tlsrpt_reporter.deliver import dkim, mail
from tlsrpt_reporter.deliver.smtp import (
    SendResult,
    SmtpDeliveryError,
    SmtpSettings,
    check_settings,
    parse_relay,
    send,
)
from tlsrpt_reporter.errors import ConfigError

RCPT = "tls-reports@example.com"
SENDER = "tlsrpt-bounces@example.net"


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> dkim.LoadedKey:
    path = tmp_path_factory.mktemp("dkim") / "rsa.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return dkim.load_key(dkim.DkimKey("example.net", "tlsrpt", path))


@pytest.fixture(scope="module")
def message(signing_key: dkim.LoadedKey) -> bytes:
    composed = mail.compose(
        report_domain="example.com",
        submitter="example.net",
        report_id="2026.03.01.ab12@example.net",
        from_addr="tlsrpt-noreply@example.net",
        to_addrs=[RCPT],
        gzip_body=gzip.compress(b'{"policies": []}' * 500, mtime=0),
        filename="example.net!example.com!1772323200!1772409599!ab12.json.gz",
        # Lines starting with "." must survive SMTP dot-stuffing.
        summary_text="A TLS report.\n.\n..two dots\n",
        date=dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC),
        message_id="m1@example.net",
    )
    return dkim.sign(composed, [signing_key])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def relay(server: SmtpServer, **kw: Any) -> SmtpSettings:
    return SmtpSettings(relay=f"{HOST}:{server.port}", helo_name="reporter.test", timeout=5, **kw)


def deliver(
    msg: bytes,
    settings: SmtpSettings,
    recipients: tuple[str, ...] = (RCPT,),
    envelope_from: str = SENDER,
    mx_lookup: Callable[[str], Awaitable[list[str]]] | None = None,
) -> SendResult:
    return asyncio.run(send(msg, envelope_from, list(recipients), settings, mx_lookup))


def verifies(data: bytes, key: dkim.LoadedKey) -> bool:
    record = dkim.record_for(key).encode()

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name.decode().rstrip(".") == dkim.record_name(key.key) else None

    return bool(dkimpy.DKIM(data, tlsrpt="strict").verify(dnsfunc=lookup))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel backlog) but never says anything."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen(8)
        yield int(s.getsockname()[1])


# --- relay ------------------------------------------------------------------------------------


def test_relay_delivery_keeps_the_message_bytes_and_the_dkim_signature(
    message: bytes, signing_key: dkim.LoadedKey
) -> None:
    with SmtpServer() as server:
        result = deliver(message, relay(server))
    assert result.accepted == (RCPT,)
    assert result.refused == ()
    assert result.route == f"handed to relay {HOST}:{server.port}"
    assert "queued as TEST1" in result.reply
    assert result.tls is False
    (got,) = server.messages
    assert got.mail_from == SENDER
    assert got.rcpt_tos == [RCPT]
    assert got.helo == "reporter.test"
    assert got.data == message
    assert verifies(got.data, signing_key)


def test_empty_envelope_sender_uses_the_null_reverse_path(message: bytes) -> None:
    with SmtpServer() as server:
        deliver(message, relay(server), envelope_from="")
    assert server.messages[0].mail_from == "<>"


def test_settings_envelope_sender_is_the_default(message: bytes) -> None:
    with SmtpServer() as server:
        deliver(message, relay(server, envelope_from="bounces@example.net"), envelope_from="")
    assert server.messages[0].mail_from == "bounces@example.net"


def test_starttls_relay_with_a_trusted_ca(
    message: bytes, server_tls: ssl.SSLContext, ca_file: str, signing_key: dkim.LoadedKey
) -> None:
    with SmtpServer(tls_context=server_tls) as server:
        result = deliver(message, relay(server, starttls=True, ca_file=ca_file))
    assert result.tls is True
    (got,) = server.messages
    assert got.tls is True
    assert got.data == message
    assert verifies(got.data, signing_key)


def test_starttls_relay_with_an_untrusted_certificate_sends_nothing(
    message: bytes, server_tls: ssl.SSLContext
) -> None:
    with (
        SmtpServer(tls_context=server_tls) as server,
        pytest.raises(SmtpDeliveryError, match="certificate") as info,
    ):
        deliver(message, relay(server, starttls=True))
    assert info.value.permanent is False
    assert info.value.stage == "STARTTLS"
    assert server.messages == []


def test_starttls_required_but_not_offered_sends_nothing(message: bytes) -> None:
    with (
        SmtpServer() as server,
        pytest.raises(SmtpDeliveryError, match="does not offer STARTTLS") as info,
    ):
        deliver(message, relay(server, starttls=True))
    assert info.value.permanent is False
    assert server.messages == []


def test_auth_with_the_password_file(
    message: bytes, server_tls: ssl.SSLContext, ca_file: str, tmp_path: Path
) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret pass\n")  # the trailing newline is not part of it
    with SmtpServer(tls_context=server_tls, users={"reporter": "s3cret pass"}) as server:
        settings = relay(
            server, starttls=True, ca_file=ca_file, username="reporter", password_file=str(password)
        )
        deliver(message, settings)
    (got,) = server.messages
    assert got.user == "reporter"
    assert got.tls is True


def test_auth_with_a_wrong_password_is_permanent(
    message: bytes, server_tls: ssl.SSLContext, ca_file: str, tmp_path: Path
) -> None:
    password = tmp_path / "password"
    password.write_text("wrong\n")
    with SmtpServer(tls_context=server_tls, users={"reporter": "s3cret"}) as server:
        settings = relay(
            server, starttls=True, ca_file=ca_file, username="reporter", password_file=str(password)
        )
        with pytest.raises(SmtpDeliveryError, match="535") as info:
            deliver(message, settings)
    assert info.value.permanent is True
    assert info.value.stage == "AUTH"
    assert server.messages == []


def test_unreadable_password_file_is_named(message: bytes, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-password"
    with SmtpServer(users={"reporter": "x"}) as server:
        settings = relay(server, username="reporter", password_file=str(missing))
        with pytest.raises(SmtpDeliveryError, match=str(missing)) as info:
            deliver(message, settings)
    assert info.value.permanent is False
    assert server.messages == []


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [
        pytest.param("451 4.3.0 try again later", False, id="rcpt-451-is-temporary"),
        pytest.param("550 5.1.1 no such user", True, id="rcpt-550-is-permanent"),
    ],
)
def test_rcpt_replies_are_classified(message: bytes, reply: str, permanent: bool) -> None:
    with (
        SmtpServer(rcpt_reply=reply) as server,
        pytest.raises(SmtpDeliveryError) as info,
    ):
        deliver(message, relay(server))
    assert info.value.permanent is permanent
    assert reply in info.value.reply
    assert reply in str(info.value)
    assert info.value.server == f"relay {HOST}:{server.port}"
    assert f"relay {HOST}:{server.port}" in str(info.value)
    assert server.messages == []


@pytest.mark.parametrize(
    ("reply", "permanent"), [("451 4.3.0 disk full", False), ("554 5.7.1 spam", True)]
)
def test_data_replies_are_classified(message: bytes, reply: str, permanent: bool) -> None:
    with (
        SmtpServer(data_reply=reply) as server,
        pytest.raises(SmtpDeliveryError, match=reply) as info,
    ):
        deliver(message, relay(server))
    assert info.value.permanent is permanent
    assert "message data" in str(info.value)


def test_some_recipients_refused_others_accepted(message: bytes) -> None:
    other = "second@example.org"
    with SmtpServer(rcpt_reply="550 5.1.1 unknown", accept_always=(other,)) as server:
        result = deliver(message, relay(server), recipients=(RCPT, other))
    assert result.accepted == (other,)
    (refusal,) = result.refused
    assert refusal.recipient == RCPT
    assert refusal.permanent is True
    assert "550" in refusal.reply
    assert server.messages[0].rcpt_tos == [other]


def test_connection_refused_is_temporary(message: bytes) -> None:
    port = free_port()
    with pytest.raises(SmtpDeliveryError) as info:
        deliver(message, SmtpSettings(relay=f"{HOST}:{port}", helo_name="r.test", timeout=5))
    assert info.value.permanent is False
    assert info.value.stage == "connect"
    assert f"relay {HOST}:{port}" in str(info.value)


def test_a_silent_server_times_out_within_the_timeout(message: bytes, silent_port: int) -> None:
    settings = SmtpSettings(relay=f"{HOST}:{silent_port}", helo_name="r.test", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SmtpDeliveryError, match="timed out") as info:
        deliver(message, settings)
    assert time.monotonic() - started < 5
    assert info.value.permanent is False


# --- direct delivery --------------------------------------------------------------------------


class FakeMx:
    """The caller's MX lookup, answering every domain with the same host list."""

    def __init__(self, *hosts: str) -> None:
        self.hosts = list(hosts)
        self.asked: list[str] = []

    async def __call__(self, domain: str) -> list[str]:
        self.asked.append(domain)
        return self.hosts


mx = FakeMx


LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def direct(server: SmtpServer, allow: tuple[Any, ...] = LOOPBACK) -> SmtpSettings:
    # The MX hosts here are loopback, which direct delivery refuses unless allowed.
    return SmtpSettings(
        relay="direct", direct_port=server.port, helo_name="r.test", timeout=5, allow_private=allow
    )


def test_direct_falls_back_to_plaintext_when_the_tls_handshake_fails(
    message: bytes, signing_key: dkim.LoadedKey
) -> None:
    lookup = mx(HOST)
    with SmtpServer(broken_starttls=True) as server:
        result = deliver(message, direct(server), mx_lookup=lookup)
    assert lookup.asked == ["example.com"]
    assert server.starttls_attempts == [1]  # TLS was tried first ...
    (got,) = server.messages
    assert got.tls is False  # ... and the report went through in plaintext
    assert result.tls is False
    assert result.route == f"delivered to MX host {HOST} (example.com)"
    assert result.accepted == (RCPT,)
    assert got.data == message
    assert verifies(got.data, signing_key)


def test_direct_uses_starttls_without_verifying_the_certificate(
    message: bytes, server_tls: ssl.SSLContext
) -> None:
    # The trustme CA is not trusted here: an MX's certificate is not checked (RFC 8460 §5.3).
    with SmtpServer(tls_context=server_tls) as server:
        result = deliver(message, direct(server), mx_lookup=mx(HOST))
    assert result.tls is True
    assert server.messages[0].tls is True


def test_direct_tries_the_next_mx_after_a_connection_failure(message: bytes) -> None:
    # 127.0.0.2 is loopback too, but nothing listens there on this port.
    with SmtpServer() as server:
        result = deliver(message, direct(server), mx_lookup=mx("127.0.0.2", HOST))
    assert result.route == f"delivered to MX host {HOST} (example.com)"
    assert len(server.messages) == 1


def test_direct_tries_the_next_mx_after_a_4xx(message: bytes) -> None:
    with (
        SmtpServer(rcpt_reply="451 4.7.1 greylisted") as server,
        pytest.raises(SmtpDeliveryError) as info,
    ):
        deliver(message, direct(server), mx_lookup=mx(HOST, HOST))
    assert server.connections == 2
    assert info.value.permanent is False
    assert "451 4.7.1 greylisted" in str(info.value)


def test_direct_stops_at_a_5xx(message: bytes) -> None:
    with (
        SmtpServer(rcpt_reply="550 5.1.1 no such user") as server,
        pytest.raises(SmtpDeliveryError) as info,
    ):
        deliver(message, direct(server), mx_lookup=mx(HOST, HOST))
    assert server.connections == 1  # RFC 5321 §5.1: a 5xx is the domain's answer
    assert info.value.permanent is True


def test_direct_reports_per_domain_outcomes(message: bytes) -> None:
    async def lookup(domain: str) -> list[str]:
        return {"example.com": [HOST], "example.org": ["127.0.0.2"]}[domain]

    with SmtpServer() as server:
        result = deliver(
            message, direct(server), recipients=(RCPT, "tls@example.org"), mx_lookup=lookup
        )
    assert result.accepted == (RCPT,)
    (refusal,) = result.refused
    assert refusal.recipient == "tls@example.org"
    assert refusal.permanent is False
    assert "MX host 127.0.0.2 (example.org)" in refusal.reply
    assert server.messages[0].rcpt_tos == [RCPT]


def test_direct_delivers_to_the_implicit_mx_the_lookup_returns(message: bytes) -> None:
    # dns.Resolver.mx_hosts answers a domain without MX records with the domain itself
    # (RFC 5321 §5.1; tested against a real DNS server in test_dns.py).
    with SmtpServer() as server:
        result = deliver(
            message, direct(server), recipients=(f"reports@{HOST}",), mx_lookup=mx(HOST)
        )
    assert result.route == f"delivered to MX host {HOST} ({HOST})"


def test_direct_with_no_mail_host_is_permanent(message: bytes) -> None:
    # An empty answer is a null MX (RFC 7505) or a domain that does not exist.
    with pytest.raises(SmtpDeliveryError, match="null MX") as info:
        deliver(message, SmtpSettings(relay="direct"), mx_lookup=mx())
    assert info.value.permanent is True


def test_direct_mx_lookup_failure_is_temporary(message: bytes) -> None:
    async def broken(domain: str) -> list[str]:
        raise OSError("SERVFAIL")

    with pytest.raises(SmtpDeliveryError, match="SERVFAIL") as info:
        deliver(message, SmtpSettings(relay="direct"), mx_lookup=broken)
    assert info.value.permanent is False


def test_direct_without_an_mx_lookup_is_a_configuration_error(message: bytes) -> None:
    with pytest.raises(ConfigError, match="MX lookup"):
        deliver(message, SmtpSettings(relay="direct"))


# --- settings ---------------------------------------------------------------------------------


def test_parse_relay_forms() -> None:
    assert parse_relay("direct") is None
    assert parse_relay("smtp.example.net:587") == ("smtp.example.net", 587)
    assert parse_relay("localhost") == ("localhost", 25)
    assert parse_relay("[2001:db8::1]:2525") == ("2001:db8::1", 2525)


@pytest.mark.parametrize("value", ["", "host:", "host:0", "host:70000", "a b:25", "[zz]:25"])
def test_parse_relay_rejects_bad_values(value: str) -> None:
    with pytest.raises(ConfigError, match="relay"):
        parse_relay(value)


def test_auth_in_clear_to_a_remote_relay_is_refused() -> None:
    remote = SmtpSettings(relay="smtp.example.net:587", username="u", password_file="/p")
    with pytest.raises(ConfigError, match="relay_starttls"):
        check_settings(remote)
    check_settings(SmtpSettings(relay="127.0.0.1:25", username="u", password_file="/p"))
    with pytest.raises(ConfigError, match="relay_password_file"):
        check_settings(SmtpSettings(relay="127.0.0.1:25", username="u"))


@pytest.mark.parametrize(
    "recipient", ["x@example.com\r\nRCPT TO:<victim@example.org>", "Name <x@example.com>", "x"]
)
def test_unsafe_recipients_are_refused_before_connecting(message: bytes, recipient: str) -> None:
    with SmtpServer() as server, pytest.raises(SmtpDeliveryError, match="recipient") as info:
        deliver(message, relay(server), recipients=(recipient,))
    assert info.value.permanent is True
    assert server.connections == 0


def test_send_result_reads_as_a_log_line(message: bytes) -> None:
    with SmtpServer() as server:
        result = deliver(message, relay(server))
    assert str(result) == (
        f"handed to relay {HOST}:{server.port} (no TLS): 2.0.0 Ok: queued as TEST1"
    )
