"""Exim main log adapter: delivery lines and TLS errors become sessions.

Exim (4.9x) writes, per remote delivery:

* ``[IP] SSL verify error: depth=0 error=certificate has expired cert=/CN=...`` or
  ``[IP] SSL verify error: certificate name mismatch: ...`` when verification fails;
* ``ID => rcpt@domain R=... T=... H=mx.example [IP] X=TLS1.3:...:256 CV=yes|no|dane ...`` for a
  delivery (``X=`` present: it went over TLS; ``CV=dane``: a DANE policy verified it);
* ``ID == rcpt@domain ... defer (-37) H=mx [IP]: TLS session: ...`` / ``ID ** ...`` for a TLS
  failure that stopped delivery, including ``a TLS session is required, but the server did not
  offer TLS support`` (``hosts_require_tls``).

One session per message, MX address and recipient domain; ``->`` lines (more recipients of the
same delivery) and deliveries down a continued connection (``[IP]*``) add nothing. Exim can
also log through syslog (``host exim[pid]: ...``): the syslog prefix is skipped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.ingest.log_session import (
    LogSession,
    reason_code,
    recipient_domain,
    verify_result,
)
from tlsrpt_reporter.ingest.log_time import EXIM_TIME
from tlsrpt_reporter.ingest.postfix_log import PROGRAM

_PID = re.compile(r"\[\d+\] ")
# Message ids: 4.96 and older "1rABCd-000Abc-Xy", 4.97 and newer "1rABCd-000000000Abc-XyZw".
_ID = re.compile(r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4} ")
_DELIVERY = re.compile(r"(?P<flag>=>|->|==|\*\*) (?P<rcpt>\S+)(?P<rest>.*)")
_HOST = re.compile(
    r" H=(?:(?P<host>[^\s\[\]]+) )?\[(?P<ip>[0-9A-Fa-f.:]+)\](?::\d+)?(?P<continued>\*)?"
)
_CIPHER = re.compile(r" X=\S+")
_VERIFIED = re.compile(r" CV=(?P<cv>\w+)")
_VERIFY_ERROR = re.compile(
    r"\[(?P<ip>[0-9A-Fa-f.:]+)\] SSL verify error: "
    r"(?:depth=\d+ error=(?P<error>.*?) cert=|(?P<mismatch>certificate name mismatch))"
)
_TLS_ERROR = re.compile(r"TLS error on connection to (?:\S+ )?\[(?P<ip>[0-9A-Fa-f.:]+)\]")
_TLS_ERROR_TEXT = "TLS error on connection"
_NOT_OFFERED = "the server did not offer TLS support"
_TLS_TEXT = re.compile(r"TLS session|TLS error|SSL_connect|an attempt to start TLS failed|certific")
_SESSION_PREFIX = re.compile(r"^TLS session: \(([^)]*)\)")
_DANE_TEXT = re.compile(r"DANE|TLSA|dane:fail", re.IGNORECASE)

_STALE = 600.0
_MAX_HELD = 10_000


@dataclass
class _Pending:
    """A TLS failure logged for an address before the delivery line that it belongs to."""

    result: str
    reason: str
    when: float


class EximAdapter:
    """Turns Exim main log lines (without their timestamp) into sessions; counts every kind
    of line it saw in ``counts``."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        # Lines that are Exim's by their form (its syslog name, a message id, its TLS errors),
        # whatever they say: none at all means the log is not Exim's (a wrong --format).
        self.recognized = 0
        self._pending: dict[str, _Pending] = {}
        # (message id, address) -> recipient domains already counted for that delivery
        self._counted: dict[str, list[str]] = {}

    def feed(self, when: float, rest: str) -> LogSession | None:
        """The session ``rest`` (a line less its time) completes, if any."""
        m = PROGRAM.match(rest)
        exim_syslog = m is not None and "exim" in m[2]
        if m is not None and exim_syslog:
            rest = rest[m.end() :]
            # Exim's own time stamp may follow when syslog has a prefix too.
            stamp = EXIM_TIME.match(rest)
            if stamp is not None:
                rest = rest[stamp.end() :]
        p = _PID.match(rest)
        if p is not None:
            rest = rest[p.end() :]
        if exim_syslog or _ID.match(rest) or "SSL verify error" in rest or _TLS_ERROR_TEXT in rest:
            self.recognized += 1
        if "SSL verify error" in rest:
            self._verify_error(when, rest)
            return None
        if _TLS_ERROR_TEXT in rest and not _ID.match(rest):
            self._tls_error(when, rest)
            return None
        i = _ID.match(rest)
        if i is None:
            self.counts["other"] += 1
            return None
        msg_id, body = i[0].strip(), rest[i.end() :]
        d = _DELIVERY.match(body)
        if d is None:
            if "TLS error on connection" in body:
                self._tls_error(when, body)
            else:
                self.counts["other"] += 1
            return None
        return self._delivery(when, msg_id, d)

    def _verify_error(self, when: float, text: str) -> None:
        m = _VERIFY_ERROR.search(text)
        if m is None:
            self.counts["unreadable-tls-line"] += 1
            return
        why = "certificate name mismatch" if m["mismatch"] else m["error"]
        self._hold(m["ip"], _Pending(verify_result(why), reason_code(why), when))
        self.counts["verification-failed"] += 1

    def _tls_error(self, when: float, text: str) -> None:
        m = _TLS_ERROR.search(text)
        if m is None:
            self.counts["unreadable-tls-line"] += 1
            return
        why = text[m.end() :].strip()
        self._hold(m["ip"], _Pending(verify_result(why), reason_code(why), when))
        self.counts["tls-error"] += 1

    def _hold(self, ip: str, pending: _Pending) -> None:
        held = self._pending.get(ip)
        if held is not None and pending.when - held.when <= _STALE:
            return  # the first failure of a connection wins
        if len(self._pending) >= _MAX_HELD:
            self._pending.clear()
        self._pending[ip] = pending

    def _delivery(self, when: float, msg_id: str, d: re.Match[str]) -> LogSession | None:
        flag, rest = d["flag"], d["rest"]
        h = _HOST.search(rest)
        if h is None:  # local delivery, or no host was reached
            self.counts["no-connection"] += 1
            return None
        if h["continued"]:
            self.counts["reused-connection"] += 1
            return None
        rcpt = d["rcpt"].strip("<>")
        try:
            domain = recipient_domain(rcpt)
        except ValueError:
            self.counts["bad-recipient-domain"] += 1
            return None
        ip, host = h["ip"], (h["host"] or h["ip"]).lower().rstrip(".")
        pending = self._pending.get(ip)
        if pending is not None and when - pending.when > _STALE:
            pending = None
        session = self._outcome(when, flag, rest, domain=domain, host=host, ip=ip, pending=pending)
        if session is None:
            self.counts["no-tls-outcome"] += 1
            return None
        self._pending.pop(ip, None)
        key = f"{msg_id} {ip}"
        done = self._counted.setdefault(key, [])
        if domain in done:
            self.counts["same-connection"] += 1
            return None
        if len(self._counted) > _MAX_HELD:
            self._counted = {key: done}
        done.append(domain)
        self.counts["session-failure" if session.result_type else "session-success"] += 1
        return session

    @staticmethod
    def _outcome(
        when: float,
        flag: str,
        rest: str,
        *,
        domain: str,
        host: str,
        ip: str,
        pending: _Pending | None,
    ) -> LogSession | None:
        """The session a delivery line shows, or None when it shows no TLS decision."""
        cv = _VERIFIED.search(rest)
        dane = (cv is not None and cv["cv"] == "dane") or bool(_DANE_TEXT.search(rest))
        policy = "tlsa" if dane else "no-policy-found"
        # RFC 8460 §4.4: a DANE policy's domain is the MX host.
        policy_domain = host if dane else domain
        if flag in ("=>", "->"):
            if _CIPHER.search(rest):
                return LogSession(when, domain, policy, policy_domain)
            if pending is None:
                return None  # delivered in clear text, TLS never tried: no TLS outcome
            # TLS was tried and failed, and Exim fell back to clear text.
            return LogSession(
                when, domain, policy, policy_domain, pending.result, host, ip, pending.reason
            )
        if _NOT_OFFERED in rest:
            return LogSession(
                when, domain, policy, policy_domain, "starttls-not-supported", host, ip,
                "starttls-not-offered",
            )  # fmt: skip
        if pending is not None and (_TLS_TEXT.search(rest) or dane):
            return LogSession(
                when, domain, policy, policy_domain, pending.result, host, ip, pending.reason
            )
        if _TLS_TEXT.search(rest) or dane:
            why = rest[rest.find(": ", _host_end(rest)) + 2 :] if ": " in rest else rest
            # GnuTLS builds (Debian's): "TLS session: (certificate verification failed): ..."
            why = _SESSION_PREFIX.sub(r"\1", why)
            result = "tlsa-invalid" if dane else verify_result(why)
            if dane and "dnssec" in why.lower():
                result = "dnssec-invalid"
            return LogSession(
                when, domain, policy, policy_domain, result, host, ip, reason_code(why)
            )
        return None

    def snapshot(self) -> dict[str, Any]:
        """Failures still waiting for their delivery line."""
        return {ip: [p.result, p.reason, p.when] for ip, p in self._pending.items()}

    def restore(self, data: dict[str, Any]) -> None:
        """The inverse of :meth:`snapshot`."""
        self._pending = {ip: _Pending(str(r), str(w), float(t)) for ip, (r, w, t) in data.items()}


def _host_end(text: str) -> int:
    """Where the ``H=name [ip]`` field of a delivery line ends (0 when it has none)."""
    m = _HOST.search(text)
    return m.end() if m else 0
