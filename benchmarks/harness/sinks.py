"""Report sinks for ``deliver.py``: the test rigs' SMTP, HTTPS and DNS servers, instrumented.

Each sink counts what it receives (the Report-ID and destination of every delivery, nothing
else kept: 100,000 mails would not fit in memory otherwise) and how many connections it has
open at once, in all and per rua host. The rigs live in ``tests/rigs``; the caller puts
``tests`` on ``sys.path`` before importing this module.
"""

from __future__ import annotations

import collections
import gzip
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP
from rigs.dnsserver import DnsServer
from rigs.httpsserver import HttpsTestServer, Recorded, Reply
from rigs.smtpserver import Received, SmtpServer
from rigs.smtpserver import _Handler as SmtpHandler

_SUBJECT_ID = re.compile(rb"\r\nSubject:[^\r]*(?:\r\n[ \t][^\r]*)*?Report-ID: <([^>]+)>")
_RCPT_HOST = re.compile(r"TO:\s*<[^>@]*@([^>]+)>", re.IGNORECASE)


class Gauge:
    """Connections open at once: now, at the peak, and per rua host (thread-safe; the SMTP
    sink counts in its event loop, the HTTPS sink in a thread per connection)."""

    def __init__(self, parent: Gauge | None = None) -> None:
        self.parent = parent
        self.open = 0
        self.peak = 0
        self.on_host: collections.Counter[str] = collections.Counter()
        self.host_peak = 0
        self.busiest = ""
        self._lock = threading.Lock()

    def enter(self) -> None:
        """A connection was accepted."""
        with self._lock:
            self.open += 1
            self.peak = max(self.peak, self.open)
        if self.parent is not None:
            self.parent.enter()

    def leave(self, host: str | None) -> None:
        """A connection closed; ``host``: the rua host it served, if it got that far."""
        with self._lock:
            self.open -= 1
            if host is not None:
                self.on_host[host] -= 1
        if self.parent is not None:
            self.parent.leave(host)

    def enter_host(self, host: str) -> None:
        """The open connection now serves rua ``host``."""
        with self._lock:
            self.on_host[host] += 1
            if self.on_host[host] > self.host_peak:
                self.host_peak, self.busiest = self.on_host[host], host
        if self.parent is not None:
            self.parent.enter_host(host)


class Tally:
    """What the sinks received: (Report-ID, destination) -> times, and when."""

    def __init__(self) -> None:
        self.seen: collections.Counter[tuple[str, str]] = collections.Counter()
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.unreadable = 0
        self.started = 0.0  # when send --now started (time.monotonic)
        self.first = 0.0
        self.last = 0.0
        self._lock = threading.Lock()

    def add(self, kind: str, report_id: str | None, destination: str) -> None:
        """Count one delivery (``report_id`` None: no Report-ID could be read from it)."""
        now = time.monotonic()
        with self._lock:
            self.first = self.first or now
            self.last = now
            self.by_kind[kind] += 1
            if report_id is None:
                self.unreadable += 1
            else:
                self.seen[(report_id, destination)] += 1

    @property
    def deliveries(self) -> int:
        """Every delivery received, duplicates included."""
        return sum(self.by_kind.values())


class _CountingSMTP(SMTP):
    """aiosmtpd's session, counting its connection and the rua host of its recipient."""

    gauge: Gauge
    rua_host: str | None = None

    def connection_made(self, transport: Any) -> None:
        self.gauge.enter()
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gauge.leave(self.rua_host)
        super().connection_lost(exc)

    async def smtp_RCPT(self, arg: str) -> None:
        match = _RCPT_HOST.search(arg or "")
        if match and self.rua_host is None:
            self.rua_host = "@" + match.group(1).lower()
            self.gauge.enter_host(self.rua_host)
        await super().smtp_RCPT(arg)


class SmtpSink(SmtpServer):
    """The relay: the rig's aiosmtpd server, counting and then dropping every message."""

    def __init__(self, tally: Tally, gauge: Gauge) -> None:
        super().__init__(on_data=self._received)
        self.tally = tally
        self.gauge = gauge

    def _protocol(self) -> SMTP:
        self.connections += 1
        proto = _CountingSMTP(
            SmtpHandler(self), loop=self._loop, hostname=self.hostname, timeout=30
        )
        proto.gauge = self.gauge
        return proto

    def _received(self, received: Received) -> None:
        self.messages.clear()  # counted, not kept
        match = _SUBJECT_ID.search(received.data.split(b"\r\n\r\n", 1)[0])
        for rcpt in received.rcpt_tos:
            self.tally.add("mailto", match.group(1).decode() if match else None, f"mailto:{rcpt}")


class HttpsSink(HttpsTestServer):
    """The rig's HTTPS receiver for every name under ``domain``, counting each POST."""

    def __init__(self, tmp: Path, domain: str, tally: Tally, gauge: Gauge) -> None:
        super().__init__(tmp, names=(f"*.{domain}",))
        self.tally = tally
        self.gauge = gauge
        self._current = threading.local()
        inner = self._server.finish_request

        # socketserver calls finish_request in the connection's thread, by attribute.
        def finish_request(request: Any, client_address: Any) -> None:
            self.gauge.enter()
            self._current.host = None
            try:
                inner(request, client_address)
            finally:
                self.gauge.leave(self._current.host)

        self._server.finish_request = finish_request  # type: ignore[method-assign]

    def record(self, request: Recorded) -> None:
        """Count the POST (the rig would keep it)."""
        host = request.headers.get("host", "").rpartition(":")[0].lower()
        self._current.host = host
        self.gauge.enter_host(host)
        try:
            report_id = json.loads(gzip.decompress(request.body))["report-id"]
        except (OSError, ValueError, KeyError, TypeError):
            report_id = None
        self.tally.add("https", report_id, f"https://{request.headers.get('host')}{request.path}")

    def next_reply(self) -> Reply:
        """Always 200: a scripted reply is for tests."""
        return Reply()


class ZoneServer(DnsServer):
    """The rig's DNS server with its zone parsed once: it parses the whole zone for every
    query otherwise, which with 100,000 records makes each answer take seconds."""

    _parsed: dict[Any, Any] | None = None

    def _records(self) -> dict[Any, Any]:
        if self._parsed is None:
            self._parsed = super()._records()
        return self._parsed

    def answer(self, wire: bytes, transport: str, max_size: int = 65535) -> bytes | None:
        """Answer as the rig does, without logging every question (memory)."""
        reply = super().answer(wire, transport, max_size)
        self.queries.clear()
        return reply
