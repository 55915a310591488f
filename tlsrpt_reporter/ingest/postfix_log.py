"""Postfix 3.x log adapter: the ``smtp`` client's TLS lines become sessions.

Postfix logs a connection's TLS outcome and its deliveries on separate lines of one ``smtp``
process, so the adapter keeps, per process, the connection it is in:

* ``server certificate verification failed for HOST[IP]:PORT: num=10:certificate has expired``
  (first failure of a connection wins, as in Postfix's own TLS-RPT code);
* ``Verified|Trusted|Untrusted|Anonymous TLS connection established to HOST[IP]:PORT: ...``;
* ``QUEUEID: to=<rcpt@domain>, relay=HOST[IP]:PORT, ..., status=sent|deferred|bounced (...)``
  ends the decision: one session per new connection and recipient domain.

Deliveries whose status text is a TLS failure (``TLS is required, but was not offered by host``,
``Server certificate not verified``, ``Cannot start TLS: handshake failure``, TLSA problems)
count even without a TLS line. Reused connections (``conn_use=2`` and up) count nothing, as
Postfix's ``smtp_tlsrpt_skip_reused_handshakes`` does. docs/log-adapters.md has the table.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tlsrpt_reporter.ingest.log_session import (
    LogSession,
    reason_code,
    recipient_domain,
    verify_result,
)

# "host prog[pid]: " (the host is missing in Postfix's own maillog_file)
PROGRAM = re.compile(r"(?:(\S+) )??([^\s\[\]]+)\[(\d+)\]: ")
_ADDR = r"(?P<host>[^\s\[\]]+)\[(?P<ip>[^\]\s]+)\](?P<port>:\d+)?"
_ESTABLISHED = re.compile(
    r"(?P<trust>Verified|Trusted|Untrusted|Anonymous) TLS connection established to " + _ADDR
)
_VERIFY_FAILED = re.compile(
    r"(?:server |CA |)certificate verification failed for " + _ADDR + r": (?:num=\d+:)?(?P<why>.*)"
)
_DANE_MATCH = re.compile(_ADDR + r": Matched DANE ")
# Postfix writes conn_use (a cached connection's use count) right after relay, only from the
# second use on.
_DELIVERY = re.compile(
    r"(?P<qid>[0-9A-Za-z]+): to=<(?P<rcpt>[^>]*)>,(?: orig_to=<[^>]*>,)? relay=(?P<relay>[^,]+),"
    r"(?: conn_use=(?P<use>\d+),)?.* status=(?P<status>\w+)(?: \((?P<text>.*)\))?$"
)
_RELAY = re.compile(_ADDR)
# Status texts that are a TLS decision, with what they mean (RFC 8460 §4.3.2).
_NOT_OFFERED = re.compile(
    r"TLS is required, but (?:was not offered by|host .* refused to start TLS)"
)
_HANDSHAKE = re.compile(r"Cannot start TLS: handshake failure")
_NOT_VERIFIED = re.compile(r"Server certificate not (?:verified|trusted)")
_TLSA = re.compile(r"TLSA|DANE|DNSSEC", re.IGNORECASE)

# A connection whose delivery line has not come after this long is forgotten (lost connection,
# or a delivery line we cannot read); the bound keeps memory flat on any log.
_STALE = 600.0
_MAX_CONNECTIONS = 10_000


@dataclass
class _Connection:
    """What one smtp process has logged about its current connection."""

    ip: str
    port: str
    host: str
    started: float
    established: bool = False
    result: str | None = None
    reason: str | None = None
    dane: bool = False
    qid: str = ""  # the message whose delivery decided it (its other recipients share it)
    counted: list[str] = field(default_factory=list)


class PostfixAdapter:
    """Turns Postfix log lines (without their timestamp) into sessions; counts every kind of
    line it saw in ``counts`` so an operator can tell what was read and what was skipped."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        # Lines of a Postfix program, whatever they say: none at all means the log is not
        # Postfix's (a wrong --format).
        self.recognized = 0
        self._connections: dict[str, _Connection] = {}

    def feed(self, when: float, rest: str) -> LogSession | None:
        """The session ``rest`` (a line less its time) completes, if any."""
        m = PROGRAM.match(rest)
        if m is None or "postfix" not in m[2]:
            self.counts["not-postfix"] += 1
            return None
        self.recognized += 1
        program, msg = m[2], rest[m.end() :]
        if program.endswith("/lmtp"):  # Postfix reports smtp only (docs/operating.md, "Postfix")
            self.counts["lmtp"] += 1
            return None
        key = f"{m[1]} {m[3]}"
        if "to=<" in msg:
            return self._delivery(key, when, msg)
        if "TLS connection established" in msg:
            self._established(key, when, msg)
        elif "verification failed for" in msg:
            self._verify_failed(key, when, msg)
        elif "Matched DANE" in msg:
            d = _DANE_MATCH.match(msg)
            if d is not None:
                self._connection(key, when, d).dane = True
            self.counts["dane-match"] += 1
        else:
            self.counts["other"] += 1
        return None

    def _connection(self, key: str, when: float, m: re.Match[str]) -> _Connection:
        """The connection a TLS line belongs to: the open one of this process when it is to the
        same address and still undecided, else a new one."""
        host, ip, port = m["host"], m["ip"], m["port"] or ""
        conn = self._connections.get(key)
        if (
            conn is None
            or (conn.ip, conn.port) != (ip, port)
            or conn.established
            or conn.qid
            or when - conn.started > _STALE
        ):
            if len(self._connections) >= _MAX_CONNECTIONS:
                self._forget_stale(when)
            conn = self._connections[key] = _Connection(ip, port, host, when)
        return conn

    def _established(self, key: str, when: float, msg: str) -> None:
        m = _ESTABLISHED.search(msg)
        if m is None:
            self.counts["unreadable-tls-line"] += 1
            return
        conn = self._connection(key, when, m)
        conn.established = True
        self.counts["tls-established"] += 1

    def _verify_failed(self, key: str, when: float, msg: str) -> None:
        m = _VERIFY_FAILED.search(msg)
        if m is None:
            self.counts["unreadable-tls-line"] += 1
            return
        conn = self._connection(key, when, m)
        if conn.result is None:  # the first failure of a connection wins
            conn.result = verify_result(m["why"])
            conn.reason = reason_code(m["why"])
            conn.dane = conn.dane or conn.result == "tlsa-invalid"
        self.counts["verification-failed"] += 1

    def _delivery(self, key: str, when: float, msg: str) -> LogSession | None:
        m = _DELIVERY.search(msg)
        if m is None:
            self.counts["unreadable-delivery"] += 1
            return None
        relay = _RELAY.match(m["relay"])
        if relay is None:  # relay=none: no connection was made
            self.counts["no-connection"] += 1
            return None
        try:
            domain = recipient_domain(m["rcpt"])
        except ValueError:
            self.counts["bad-recipient-domain"] += 1
            return None
        if m["use"] and int(m["use"]) > 1:
            self.counts["reused-connection"] += 1
            return None
        status, text = m["status"], m["text"] or ""
        qid = m["qid"]
        conn = self._connections.get(key)
        if (
            conn is None
            or (conn.ip, conn.port) != (relay["ip"], relay["port"] or "")
            # after a delivery, a new message without conn_use is a new connection
            or (conn.qid and conn.qid != qid)
            # "not offered" cannot follow an established handshake: a new connection
            or (conn.established and _NOT_OFFERED.search(text))
        ):
            conn = self._from_status(key, when, qid=qid, relay=relay, text=text)
            if conn is None:
                self.counts["no-tls-outcome"] += 1
                return None
        conn.qid = qid
        if domain in conn.counted:  # another recipient of the same connection
            self.counts["same-connection"] += 1
            return None
        conn.counted.append(domain)
        return self._session(conn, when, domain, status, text)

    def _from_status(
        self, key: str, when: float, *, qid: str, relay: re.Match[str], text: str
    ) -> _Connection | None:
        """A connection known only from a failed delivery's status text."""
        if _NOT_OFFERED.search(text):
            result, reason = "starttls-not-supported", "starttls-not-offered"
        elif _HANDSHAKE.search(text):
            result, reason = "validation-failure", "tls-handshake-failure"
        elif _NOT_VERIFIED.search(text):
            result, reason = "certificate-not-trusted", reason_code(text)
        elif _TLSA.search(text):
            result, reason = "tlsa-invalid", reason_code(text)
        else:
            return None
        conn = _Connection(
            relay["ip"], relay["port"] or "", relay["host"], when, result=result, reason=reason,
            qid=qid, dane=result == "tlsa-invalid",
        )  # fmt: skip
        self._connections[key] = conn
        return conn

    def _session(
        self, conn: _Connection, when: float, domain: str, status: str, text: str
    ) -> LogSession:
        policy = "tlsa" if conn.dane else "no-policy-found"
        # RFC 8460 §4.4: a DANE policy's domain is the MX host; any other belongs to the domain.
        policy_domain = conn.host.lower().rstrip(".") if conn.dane else domain
        result = conn.result
        if status == "sent":
            # Delivered: whatever was logged on the way did not stop the policy in force (an
            # opportunistic "may" level logs verification errors and carries on).
            result = None
        elif conn.established:
            # TLS was up: only a refusal because of the certificate is a TLS failure (a
            # greylisting deferral after a good handshake is a successful TLS session).
            if _NOT_VERIFIED.search(text) or _TLSA.search(text):
                result = result or "certificate-not-trusted"
            else:
                result = None
        if result is None:
            self.counts["session-success"] += 1
            return LogSession(when, domain, policy, policy_domain)
        self.counts["session-failure"] += 1
        reason = conn.reason or reason_code(text) or None
        return LogSession(when, domain, policy, policy_domain, result, conn.host, conn.ip, reason)

    def _forget_stale(self, now: float) -> None:
        for key in [k for k, c in self._connections.items() if now - c.started > _STALE]:
            del self._connections[key]
        if len(self._connections) >= _MAX_CONNECTIONS:
            self._connections.clear()
            self.counts["connections-forgotten"] += 1

    def snapshot(self) -> dict[str, Any]:
        """The open connections, to resume exactly where a stopped follower left off."""
        # Not dataclasses.asdict: its deep copy made each save of a position cost seconds with
        # thousands of open connections.
        return {
            key: {**vars(conn), "counted": list(conn.counted)}
            for key, conn in self._connections.items()
        }

    def restore(self, data: dict[str, Any]) -> None:
        """The inverse of :meth:`snapshot`."""
        self._connections = {key: _Connection(**value) for key, value in data.items()}
