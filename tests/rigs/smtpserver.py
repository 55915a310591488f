"""A real SMTP server for the delivery tests: aiosmtpd on 127.0.0.1, an ephemeral port, a thread.

It captures every accepted transaction (envelope, raw message bytes, whether the session was
encrypted, who authenticated) and can be told to refuse RCPT or DATA, to offer STARTTLS with a
trustme certificate, to require AUTH, or to offer STARTTLS and then break the handshake.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


@dataclass
class Received:
    """One transaction the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    user: str | None
    helo: str


@dataclass
class _Config:
    rcpt_reply: str | None = None
    data_reply: str | None = None
    users: dict[str, str] = field(default_factory=dict)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.server.config.rcpt_reply
        if reply and address not in self.server.accept_always:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        if self.server.config.data_reply:
            return self.server.config.data_reply
        assert envelope.original_content is not None
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=envelope.original_content,
            tls=session.ssl is not None,
            user=session.auth_data if session.authenticated else None,
            helo=session.host_name or "",
        )
        self.server.messages.append(received)
        if self.server.on_data is not None:
            self.server.on_data(received)
        return "250 2.0.0 Ok: queued as TEST1"


class _BrokenStartTls(SMTP):
    """Offers STARTTLS, says 220, then answers the TLS ClientHello with plaintext and hangs up."""

    starttls_attempts: list[int]

    async def smtp_STARTTLS(self, arg: str) -> None:
        self.starttls_attempts.append(1)
        await self.push("220 Ready to start TLS")
        transport = self.transport
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"this is not a TLS server hello\r\n")
        transport.close()


class SmtpServer:
    """Use as a context manager; ``port`` is known once entered."""

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        broken_starttls: bool = False,
        users: dict[str, str] | None = None,
        rcpt_reply: str | None = None,
        data_reply: str | None = None,
        accept_always: tuple[str, ...] = (),
        on_data: Callable[[Received], None] | None = None,
        hostname: str = "mx.test",
        host: str = HOST,
        port: int = 0,
    ) -> None:
        if broken_starttls and tls_context is None:
            # Any context will do: it only makes aiosmtpd advertise STARTTLS.
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.hostname = hostname  # in the greeting and the EHLO reply
        self.host = host
        self.wanted_port = port  # 0: an ephemeral port, known as ``port`` once entered
        self.tls_context = tls_context
        self.broken_starttls = broken_starttls
        self.config = _Config(rcpt_reply, data_reply, dict(users or {}))
        self.accept_always = accept_always
        self.on_data = on_data  # called after a message is stored, before the 250 reply
        self.messages: list[Received] = []
        self.starttls_attempts: list[int] = []
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> SmtpServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("SMTP test server did not start")
        if self._error:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        def stop() -> None:
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        if self._thread.is_alive():  # not when it failed to start
            self._loop.call_soon_threadsafe(stop)
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                self._loop.create_server(self._protocol, self.host, self.wanted_port)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _protocol(self) -> SMTP:
        self.connections += 1
        kwargs: dict[str, Any] = {
            "loop": self._loop,
            "hostname": self.hostname,
            "tls_context": self.tls_context,
            "timeout": 10,
        }
        if self.config.users:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = True
        if self.broken_starttls:
            proto = _BrokenStartTls(_Handler(self), **kwargs)
            proto.starttls_attempts = self.starttls_attempts
            return proto
        return SMTP(_Handler(self), **kwargs)

    def _authenticate(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = data.login.decode()
        ok = self.config.users.get(user) == data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)
