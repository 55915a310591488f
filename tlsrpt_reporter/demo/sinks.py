"""Local SMTP and HTTPS sinks for ``tlsrpt-reporter demo``: they store what they receive.

Loopback only, ephemeral ports, stopped when the demo ends. They need the ``demo`` extra
(aiosmtpd, trustme), which ``make demo`` installs.
"""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tlsrpt_reporter.errors import TlsRptError

try:
    import trustme
    from aiosmtpd.controller import Controller
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise TlsRptError(
        f"the demo needs the 'demo' extra ({exc.name} is missing): "
        "pip install 'tlsrpt-rfc8460-reporter[demo]' or run make demo"
    ) from None

_MAX_BODY = 16 * 1024 * 1024


class SmtpSink:
    """An SMTP server on 127.0.0.1 that writes each message to ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.received: list[Path] = []
        directory.mkdir(parents=True, exist_ok=True)
        # aiosmtpd's Controller cannot listen on port 0: ask the kernel for a free port first.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        self._controller = Controller(self, hostname="127.0.0.1", port=free)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd's hook: store the message, accept it."""
        path = self.directory / f"{len(self.received) + 1:04d}.eml"
        path.write_bytes(envelope.original_content)
        self.received.append(path)
        return "250 2.0.0 stored by the demo sink"

    @property
    def port(self) -> int:
        """The port the sink listens on."""
        return int(self._controller.port)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


class HttpsSink:
    """An HTTPS server on 127.0.0.1 with a throw-away CA, storing each POST body."""

    def __init__(self, directory: Path, names: list[str]) -> None:
        self.directory = directory
        self.received: list[Path] = []
        self._naming = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = directory / "demo-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*(names or ["localhost"])).configure_cert(context)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the demo prints its own summary."""

            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length", "0")), _MAX_BODY)
                body = self.rfile.read(length)
                # Deliveries run in parallel lanes: one number per POST, never one file for two.
                with sink._naming:
                    path = sink.directory / f"{len(sink.received) + 1:04d}.json.gz"
                    sink.received.append(path)
                path.write_bytes(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The port the sink listens on."""
        return int(self._server.server_address[1])

    def __enter__(self) -> HttpsSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
