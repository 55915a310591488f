"""A real DNS server for the resolver tests: 127.0.0.1, one ephemeral port, UDP and TCP.

It serves a zone given as a dict, ``{"name": [("TXT", '"part one" "part two"'), ...]}``, with
the record data in zone-file syntax (so a TXT record can have several character-strings; the
RFC 3597 form ``\\# LENGTH HEX`` serves bytes as they are), and
answers like an authoritative server: the records asked for, NODATA for a name that exists
(or has names below it) without that type, NXDOMAIN for anything else, CNAMEs followed inside
the zone. Names in ``servfail`` get SERVFAIL, names in ``drop`` get no answer at all (the client
times out), names in ``truncate`` get an empty truncated answer over UDP so the client must come
back over TCP. An answer larger than the client's UDP buffer is truncated the same way.

With ``authenticated`` every answer has the AD bit set, as a validating resolver sets it for
DNSSEC-signed data (the DANE rig needs it); ``port`` binds a fixed port such as 53 (the rig runs
in a network namespace of its own, where that port is free).

Every question is logged in ``queries``. Use it as a context manager; ``stop`` returns within
about a second (a TCP client left idle is cut after ``_TCP_IDLE`` seconds).
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME

HOST = "127.0.0.1"
Zone = dict[str, list[tuple[str, str]]]

_TTL = 300
_TCP_IDLE = 1.0
_MAX_CNAME_CHAIN = 8
_UDP_DEFAULT_SIZE = 512  # RFC 1035 §4.2.1, for a query without EDNS


@dataclass(frozen=True)
class Query:
    """One question the server received."""

    name: str  # lower case, no trailing dot
    rdtype: str
    transport: str  # "udp" or "tcp"


class DnsServer:
    """The server; mutate ``zone``, ``servfail``, ``drop`` and ``truncate`` at any time."""

    def __init__(
        self,
        zone: Zone | None = None,
        *,
        servfail: Iterable[str] = (),
        drop: Iterable[str] = (),
        truncate: Iterable[str] = (),
        port: int = 0,
        authenticated: bool = False,
    ) -> None:
        self.zone: Zone = dict(zone or {})
        self.wanted_port = port  # 0: an ephemeral port, the same number for UDP and TCP
        # Set the AD bit on answers, as a validating resolver does for signed data: Postfix
        # applies DANE only to TLSA records that arrived with it.
        self.authenticated = authenticated
        self.servfail = {_key(name) for name in servfail}
        self.drop = {_key(name) for name in drop}
        self.truncate = {_key(name) for name in truncate}
        self.queries: list[Query] = []
        self.port = 0
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> DnsServer:
        """Bind UDP and TCP on one free loopback port and serve in two threads."""
        self._records()  # a typo in the zone fails here, not as a silent timeout later
        udp, tcp = _bind_pair(self)
        self.port = udp.server_address[1]
        self._servers = [udp, tcp]
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving and close the sockets."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def asked(self, name: str, rdtype: str | None = None) -> list[Query]:
        """The questions received for ``name`` (and ``rdtype``, when given)."""
        key = _key(name)
        return [q for q in self.queries if q.name == key and rdtype in (None, q.rdtype)]

    def answer(self, wire: bytes, transport: str, max_size: int = 65535) -> bytes | None:
        """The reply to one query message in wire format, or None for no reply."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if len(query.question) != 1:
            return None
        question = query.question[0]
        name = _key(question.name.to_text())
        self.queries.append(Query(name, dns.rdatatype.to_text(question.rdtype), transport))
        if name in self.drop:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if self.authenticated:
            response.flags |= dns.flags.AD
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif transport == "udp" and name in self.truncate:
            response.flags |= dns.flags.TC
        else:
            self._fill(response, question.name, question.rdtype)
        if transport == "udp" and query.edns >= 0:
            max_size = max(query.payload, _UDP_DEFAULT_SIZE)
        elif transport == "udp":
            max_size = _UDP_DEFAULT_SIZE
        reply = response.to_wire(max_size=65535)  # measured here, not cut by dnspython
        if len(reply) > max_size:
            # RFC 1035 §4.2.1: what does not fit is cut and flagged; the client retries on TCP.
            response.answer = []
            response.flags |= dns.flags.TC
            reply = response.to_wire()
        return reply

    def _fill(
        self, response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> None:
        records = self._records()
        current = qname
        for _ in range(_MAX_CNAME_CHAIN):
            here = records.get(current)
            if here is None:
                if not any(name.is_subdomain(current) for name in records):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return  # else an empty non-terminal: NODATA
            cnames = [rdata for rdata in here if isinstance(rdata, CNAME)]
            if cnames and rdtype != dns.rdatatype.CNAME:
                response.answer.append(dns.rrset.from_rdata_list(current, _TTL, cnames[:1]))
                current = cnames[0].target
                continue
            matching = [rdata for rdata in here if rdata.rdtype == rdtype]
            if matching:
                response.answer.append(dns.rrset.from_rdata_list(current, _TTL, matching))
            return

    def _records(self) -> dict[dns.name.Name, list[dns.rdata.Rdata]]:
        records: dict[dns.name.Name, list[dns.rdata.Rdata]] = {}
        for name, entries in self.zone.items():
            owner = dns.name.from_text(_key(name) + ".")
            for rdtype, text in entries:
                if text.startswith("\\# "):
                    # RFC 3597 generic form, taken as is: data that dnspython would refuse to
                    # parse (a TLSA digest of the wrong length) is exactly what some tests serve.
                    rdata: dns.rdata.Rdata = dns.rdata.GenericRdata(
                        dns.rdataclass.IN,
                        dns.rdatatype.from_text(rdtype),
                        bytes.fromhex("".join(text.split()[2:])),
                    )
                    records.setdefault(owner, []).append(rdata)
                    continue
                rdata = dns.rdata.from_text(
                    dns.rdataclass.IN,
                    dns.rdatatype.from_text(rdtype),
                    text,
                    origin=dns.name.root,
                    relativize=False,
                )
                records.setdefault(owner, []).append(rdata)
        return records


class _UdpHandler(socketserver.BaseRequestHandler):
    server: _UdpServer

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.dns.answer(data, "udp")
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(_TCP_IDLE)
        try:
            while True:
                # RFC 1035 §4.2.2: each message is preceded by its two-byte length.
                header = _read_exactly(conn, 2)
                if header is None:
                    return
                body = _read_exactly(conn, struct.unpack("!H", header)[0])
                if body is None:
                    return
                reply = self.server.dns.answer(body, "tcp")
                if reply is not None:
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:  # the idle timeout or the client going away
            return


class _UdpServer(socketserver.UDPServer):
    def __init__(self, dns_server: DnsServer, port: int) -> None:
        self.dns = dns_server
        super().__init__((HOST, port), _UdpHandler)


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, dns_server: DnsServer, port: int) -> None:
        self.dns = dns_server
        super().__init__((HOST, port), _TcpHandler)


def _bind_pair(dns_server: DnsServer) -> tuple[_UdpServer, _TcpServer]:
    """UDP on an ephemeral port and TCP on the same number (resolvers use one port for both)."""
    if dns_server.wanted_port:
        return (
            _UdpServer(dns_server, dns_server.wanted_port),
            _TcpServer(dns_server, dns_server.wanted_port),
        )
    for _ in range(50):
        udp = _UdpServer(dns_server, 0)
        try:
            tcp = _TcpServer(dns_server, udp.server_address[1])
        except OSError:
            udp.server_close()
            continue
        return udp, tcp
    raise RuntimeError("no free port for both UDP and TCP on 127.0.0.1")


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _key(name: str) -> str:
    return name.lower().rstrip(".")
