"""A real HTTPS report receiver for tests: TLS with a trustme certificate, in a thread.

It records every TCP connection, TLS server name (SNI) and request, and answers from a script
of :class:`Reply` objects (then 200 OK), so tests can play a receiver that fails, redirects,
stalls or answers with far too much.
"""

from __future__ import annotations

import collections
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``delay`` stalls before the status line (a slow receiver); ``filler`` streams that many
    extra bytes after ``body``, announced in Content-Length (a receiver answering too much);
    ``trickle`` sends the filler one byte per that many seconds (each read is quick, the whole
    answer is not).
    """

    status: int = 200
    body: bytes = b"accepted"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    filler: int = 0
    trickle: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    peer: str
    sni: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stuck test client must not pin a server thread forever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest output is for test results."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        owner = self.server.owner
        # Left on the socket by the SNI callback during the handshake.
        sni = getattr(self.connection, "_tlsrpt_sni", None)
        owner.record(
            Recorded(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                peer=self.client_address[0],
                sni=sni,
            )
        )
        reply = owner.next_reply()
        if reply.delay and owner.stopping.wait(reply.delay):
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body) + reply.filler))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(reply.body)
            left = reply.filler
            while left > 0 and not owner.stopping.is_set():
                n = 1 if reply.trickle else min(left, _CHUNK)
                if reply.trickle and owner.stopping.wait(reply.trickle):
                    return
                self.wfile.write(b"x" * n)
                self.wfile.flush()
                owner.add_filler_sent(n)
                left -= n
        except OSError:
            pass  # the client hung up on purpose (a capped read)

    do_POST = do_GET = do_PUT = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HttpsTestServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshake in the connection's own thread, so a stalled client blocks no one."""
        self.owner.connected(client_address[0])
        request.settimeout(10)
        try:
            tls = self.owner.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.owner.handshake_failed(str(exc))
            return
        _Handler(tls, client_address, self)


class _Server6(_Server):
    address_family = socket.AF_INET6


class HttpsTestServer:
    """An HTTPS server on ``host`` (127.0.0.1 or ::1) with a certificate for ``names``.

    Use as a context manager; ``ca`` is the trustme CA clients must trust (``ca_file``).
    """

    def __init__(
        self, tmp: Path, names: tuple[str, ...] = ("reports.test",), host: str = "127.0.0.1"
    ) -> None:
        self.ca = trustme.CA()
        self.ca_file = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*names).configure_cert(self.context)
        self.context.sni_callback = self._sni
        self.requests: list[Recorded] = []
        self.connections: list[str] = []
        self.sni_names: list[str | None] = []
        self.handshake_errors: list[str] = []
        self.filler_sent = 0
        self.stopping = threading.Event()
        self._replies: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, 0), _Handler)
        self._server.owner = self
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _sni(
        self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
    ) -> None:
        sock._tlsrpt_sni = name  # type: ignore[union-attr]
        with self._lock:
            self.sni_names.append(name)

    def url(self, path: str = "/v1/tlsrpt", name: str = "reports.test") -> str:
        """The rua of this server under ``name`` (resolved by the test's own resolver)."""
        return f"https://{name}:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order; then 200 OK."""
        with self._lock:
            self._replies.extend(replies)

    def next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else Reply()

    def record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def connected(self, peer: str) -> None:
        with self._lock:
            self.connections.append(peer)

    def handshake_failed(self, error: str) -> None:
        with self._lock:
            self.handshake_errors.append(error)

    def add_filler_sent(self, n: int) -> None:
        with self._lock:
            self.filler_sent += n

    def __enter__(self) -> HttpsTestServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
