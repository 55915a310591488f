"""``tlsrpt_reporter.deliver.smtp_session.session`` directly, against the real aiosmtpd server of
``rigs.smtpserver``: one transaction to one server, STARTTLS as the hop asks (and plaintext when
an opportunistic handshake breaks), and how refusals and failures are reported."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from rigs.smtpserver import HOST, SmtpServer

from tlsrpt_reporter.deliver.smtp_session import (
    Hop,
    Job,
    Outcome,
    SmtpDeliveryError,
    SmtpSettings,
    TlsMode,
    session,
)

SENDER = "tlsrpt-bounces@example.net"
RCPT = "tls-reports@example.com"
MESSAGE = (
    b"From: tlsrpt-noreply@example.net\r\n"
    b"To: tls-reports@example.com\r\n"
    b"Subject: Report Domain: example.com\r\n"
    b"\r\n"
    b"A report.\r\n"
    b".\r\n"
    b"..two dots\r\n"
)


def job(timeout: float = 10.0) -> Job:
    return Job(MESSAGE, SENDER, SmtpSettings(timeout=timeout), helo="reporter.example.net")


def hop(server: SmtpServer | int, tls: TlsMode = "off", ca_file: str = "") -> Hop:
    port = server if isinstance(server, int) else server.port
    return Hop(HOST, port, f"relay {HOST}:{port}", tls, ca_file=ca_file)


def run(rcpts: list[str], where: Hop, j: Job | None = None) -> Outcome:
    return asyncio.run(session(j or job(), rcpts, where))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()  # a CA the system store does not hold


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    return context


def test_a_plain_transaction_hands_over_the_message_unchanged() -> None:
    with SmtpServer() as server:
        outcome = run([RCPT, "second@example.com"], hop(server))
    assert outcome.accepted == (RCPT, "second@example.com")
    assert outcome.refused == ()
    assert outcome.tls is False
    assert "Ok: queued as TEST1" in outcome.reply
    (got,) = server.messages
    assert got.data == MESSAGE  # dot-stuffing undone, nothing rewritten: DKIM survives
    assert got.mail_from == SENDER
    assert got.rcpt_tos == [RCPT, "second@example.com"]
    assert got.helo == "reporter.example.net"
    assert got.tls is False


def test_tls_off_does_not_start_tls_even_when_offered(server_tls: ssl.SSLContext) -> None:
    with SmtpServer(tls_context=server_tls) as server:
        outcome = run([RCPT], hop(server, "off"))
    assert outcome.tls is False
    assert server.messages[0].tls is False


def test_opportunistic_tls_is_used_when_offered_without_checking_the_certificate(
    server_tls: ssl.SSLContext,
) -> None:
    with SmtpServer(tls_context=server_tls) as server:
        outcome = run([RCPT], hop(server, "opportunistic"))
    assert outcome.tls is True
    assert server.messages[0].tls is True
    assert server.connections == 1


def test_opportunistic_tls_that_fails_falls_back_to_plaintext() -> None:
    with SmtpServer(broken_starttls=True) as server:
        outcome = run([RCPT], hop(server, "opportunistic"))
    assert server.starttls_attempts == [1]  # TLS was tried first ...
    assert server.connections == 2  # ... then a new session without it
    assert outcome.tls is False
    assert outcome.accepted == (RCPT,)
    (got,) = server.messages
    assert got.tls is False
    assert got.data == MESSAGE


def test_opportunistic_tls_is_skipped_when_the_server_does_not_offer_it() -> None:
    with SmtpServer() as server:
        outcome = run([RCPT], hop(server, "opportunistic"))
    assert outcome.tls is False
    assert server.connections == 1
    assert server.starttls_attempts == []


def test_required_tls_that_fails_is_an_error_without_a_plaintext_retry() -> None:
    with SmtpServer(broken_starttls=True) as server, pytest.raises(SmtpDeliveryError) as caught:
        run([RCPT], hop(server, "required"))
    assert caught.value.stage == "STARTTLS"
    assert caught.value.permanent is False
    assert server.connections == 1
    assert server.messages == []


def test_required_tls_verifies_the_certificate_against_the_ca_file(
    ca: trustme.CA, server_tls: ssl.SSLContext, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with SmtpServer(tls_context=server_tls) as server:
        outcome = run([RCPT], hop(server, "required", str(ca_file)))
        with pytest.raises(SmtpDeliveryError, match="TLS certificate not accepted") as caught:
            run([RCPT], hop(server, "required"))  # the system store lacks the test CA
    assert outcome.tls is True
    assert caught.value.stage == "STARTTLS"
    assert [m.tls for m in server.messages] == [True]  # nothing sent without verified TLS


def test_required_tls_from_a_server_that_does_not_offer_it_sends_nothing() -> None:
    with (
        SmtpServer() as server,
        pytest.raises(SmtpDeliveryError, match="does not offer STARTTLS") as caught,
    ):
        run([RCPT], hop(server, "required"))
    assert caught.value.stage == "STARTTLS"
    assert server.messages == []


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("550 5.1.1 no such user", True), ("452 4.2.2 mailbox full", False)],
)
def test_some_recipients_refused_are_reported_with_their_replies(
    reply: str, permanent: bool
) -> None:
    with SmtpServer(rcpt_reply=reply, accept_always=(RCPT,)) as server:
        outcome = run(["gone@example.com", RCPT], hop(server))
    assert outcome.accepted == (RCPT,)
    (refusal,) = outcome.refused
    assert refusal.recipient == "gone@example.com"
    assert refusal.reply == reply
    assert refusal.permanent is permanent
    assert server.messages[0].rcpt_tos == [RCPT]


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("550 5.1.1 no such user", True), ("450 4.2.0 try later", False)],
)
def test_every_recipient_refused_is_an_error_permanent_only_for_5xx(
    reply: str, permanent: bool
) -> None:
    with SmtpServer(rcpt_reply=reply) as server, pytest.raises(SmtpDeliveryError) as caught:
        run([RCPT], hop(server))
    error = caught.value
    assert error.permanent is permanent
    assert error.stage == "transaction"
    assert error.server == f"relay {HOST}:{server.port}"
    assert error.reply == f"{RCPT}: {reply}"
    assert str(error).startswith(f"relay {HOST}:{server.port} refused every recipient")


def test_a_refused_message_names_the_data_step_and_the_reply() -> None:
    with (
        SmtpServer(data_reply="554 5.7.1 rejected as spam") as server,
        pytest.raises(SmtpDeliveryError) as caught,
    ):
        run([RCPT], hop(server))
    assert "answered 554 5.7.1 rejected as spam to the message data" in str(caught.value)
    assert caught.value.permanent is True
    assert caught.value.reply == "554 5.7.1 rejected as spam"


def test_no_server_listening_is_a_temporary_connect_failure() -> None:
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind((HOST, 0))
        port = placeholder.getsockname()[1]
        with pytest.raises(SmtpDeliveryError) as caught:
            run([RCPT], hop(port))
    assert caught.value.stage == "connect"
    assert caught.value.permanent is False
    assert f"relay {HOST}:{port}: connect failed" in str(caught.value)
