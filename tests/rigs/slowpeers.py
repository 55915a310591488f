"""Scripted report receivers for the slow-peer tests: an SMTP server and an HTTPS server on
127.0.0.1, each an asyncio loop in a thread, that can trickle their answer a byte at a time and
never finish it, hold a connection until the test releases it, or run a hook at the moment of
their final answer (the crash-window test kills the sender there).

Both count the connections open at once (``peak``) and log what happened, in order, in
``events`` (shared with other servers when a test passes one list to all), so that tests assert
by ordering rather than by the clock. The SMTP dialogue is the part of RFC 5321 aiosmtplib
uses; the HTTP one reads one request and answers with ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import trustme

HOST = "127.0.0.1"
# How long a held connection or a gate waits at most: far beyond any test, below pytest's kill.
_LONGEST = 120.0
_GATE_WAIT = 30.0


@dataclass
class Log:
    """Events in the order they happened, from any server thread."""

    entries: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: str) -> None:
        with self.lock:
            self.entries.append(entry)

    def index(self, entry: str) -> int:
        with self.lock:
            return self.entries.index(entry)


class _LoopServer:
    """An asyncio server in a thread; subclasses implement :meth:`_session`."""

    def __init__(self, name: str, events: Log | None, tls: ssl.SSLContext | None) -> None:
        self.name = name
        self.events = events if events is not None else Log()
        self.tls = tls
        self.open = 0
        self.peak = 0
        self.port = 0
        self.release = threading.Event()  # ends every held connection
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> _LoopServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{self.name}: test server did not start")
        if self._error:
            raise self._error
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release.set()
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
            # Sessions still held or trickling end here, while their loop still runs.
            sessions = asyncio.all_tasks(self._loop)
            for task in sessions:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*sessions, return_exceptions=True))
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            # A report mail is a few KB; the limit only bounds readuntil().
            server = await asyncio.start_server(
                self._client, HOST, 0, ssl=self.tls, limit=16 * 1024 * 1024
            )
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await self._session(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client hung up: at its deadline, or killed
        finally:
            self.open -= 1
            self.events.add(f"{self.name}: closed")
            writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _held(self, reader: asyncio.StreamReader) -> str:
        """Wait until the test releases held connections (or the server stops): "released";
        or until the client hangs up first: "client hung up"."""
        released = asyncio.ensure_future(asyncio.to_thread(self.release.wait, _LONGEST))
        hung_up = asyncio.ensure_future(reader.read(1))  # the client says nothing more: EOF
        done, pending = await asyncio.wait({released, hung_up}, return_when="FIRST_COMPLETED")
        for task in pending:
            task.cancel()
        if hung_up in done:
            hung_up.exception()  # a reset or a TLS alert also means gone
            return "client hung up"
        return "released"

    async def _trickle(self, writer: asyncio.StreamWriter, text: bytes, every: float) -> None:
        """Send ``text`` one byte every ``every`` seconds, again and again, until released."""
        while not self.release.is_set():
            for byte in text:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(every)


class ScriptedSmtp(_LoopServer):
    """An SMTP server that accepts every message, or:

    ``trickle``: answers EHLO with a multi-line reply one byte every ``trickle`` seconds that
    never ends; ``gate``: holds each answer to DATA until ``gate`` connections were open at
    once (or a long time passed); ``on_quit``: called with the session's recipients when QUIT
    arrives, before it is answered.
    """

    def __init__(
        self,
        name: str = "smtp",
        *,
        events: Log | None = None,
        trickle: float = 0.0,
        gate: int = 0,
        on_quit: Callable[[list[str]], None] | None = None,
    ) -> None:
        super().__init__(name, events, None)
        self.trickle = trickle
        self.gate = gate
        self.on_quit = on_quit
        self.messages: list[tuple[list[str], bytes]] = []
        self._gate_open = threading.Event()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.gate and self.open >= self.gate:
            self._gate_open.set()
        writer.write(b"220 slow.test ESMTP\r\n")
        rcpts: list[str] = []
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                if self.trickle:
                    await self._trickle(writer, b"250-slow.test says hello\r\n", self.trickle)
                    return
                writer.write(b"250-slow.test\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                rcpts = []
                writer.write(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                rcpts.append(line.decode().partition(":")[2].strip().strip("<>"))
                writer.write(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                if self.gate:
                    # Opened for good after one long wait: a failing test fails once, not
                    # once per message.
                    await asyncio.to_thread(self._gate_open.wait, _GATE_WAIT)
                    self._gate_open.set()
                self.messages.append((list(rcpts), data))
                self.events.add(f"{self.name}: accepted {','.join(rcpts)}")
                writer.write(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"QUIT":
                if self.on_quit is not None:
                    await asyncio.to_thread(self.on_quit, rcpts)
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 2.0.0 Ok\r\n")
            await writer.drain()


@dataclass(frozen=True)
class Request:
    """One request the HTTPS server read."""

    host: str
    path: str
    body: bytes


class ScriptedHttps(_LoopServer):
    """An HTTPS server with a trustme certificate for ``names`` that answers 200, or:

    ``trickle``: after reading the request, sends a status line and headers one byte every
    ``trickle`` seconds that never end; ``hold``: answers nothing until :attr:`release` is
    set, then hangs up (its event says whether the release or the client ended the wait);
    ``after_status``: sends "200 OK" with a Content-Length, calls ``after_status`` with the
    request, and never sends the body. ``on_request`` is called with each request as soon as
    it is read. Servers given one ``ca`` share one trust anchor (the reporter takes one
    ``ca_file``).
    """

    def __init__(
        self,
        tmp: Path,
        names: tuple[str, ...],
        name: str = "https",
        *,
        events: Log | None = None,
        trickle: float = 0.0,
        hold: bool = False,
        after_status: Callable[[Request], None] | None = None,
        on_request: Callable[[Request], None] | None = None,
        ca: trustme.CA | None = None,
    ) -> None:
        self.ca = ca or trustme.CA()
        self.ca_file = tmp / f"{name}-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*names).configure_cert(context)
        super().__init__(name, events, context)
        self.trickle = trickle
        self.hold = hold
        self.after_status = after_status
        self.on_request = on_request
        self.requests: list[Request] = []

    def url(self, host: str, path: str = "/v1/tlsrpt") -> str:
        """The rua of this server under the name ``host``."""
        return f"https://{host}:{self.port}{path}"

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = Request(headers.get("host", ""), lines[0].split(" ")[1], body)
        self.requests.append(request)
        self.events.add(f"{self.name}: request {request.host}{request.path}")
        if self.on_request is not None:
            self.on_request(request)
        if self.trickle:
            await self._trickle(writer, b"HTTP/1.1 200 OK\r\nX-Slow: yes\r\n", self.trickle)
        elif self.hold:
            self.events.add(f"{self.name}: {await self._held(reader)}")
        elif self.after_status is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n")
            await writer.drain()
            await asyncio.to_thread(self.after_status, request)
            await self._held(reader)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
