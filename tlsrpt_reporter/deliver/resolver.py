"""All DNS access of the reporter, through dnspython's asyncio resolver.

This module owns every query the reporter makes: the TLSRPT TXT record (RFC 8460 §3), the
A/AAAA addresses of an HTTPS rua host, the MX hosts of a mailto domain, and plain TXT (DKIM key
records), asked as the ``[dns]`` settings (``config.schema.DnsSettings``) say. It turns
dnspython's outcomes into the distinction the callers need: "there is nothing" (NXDOMAIN,
NODATA) is an answer, while SERVFAIL, timeouts and unreachable servers are temporary and mean
"ask again later". Addresses and MX records are kept for the rest of a pass
(:mod:`.dns_cache`). Lookups that reach no nameserver at all (timeouts, refusals, network
errors) are told apart as :class:`DnsUnreachable`: after :data:`UNREACHABLE_AFTER` of them in a
row the resolver stops asking until :meth:`Resolver.new_pass`, so that a pass over thousands
of domains with the resolver down takes seconds, not minutes. It must not parse the records
(tlsrpt_reporter.deliver.record does), decide where reports go, or check the settings
(``config.load`` does); :mod:`.dns_setup` turns them into dnspython's resolver.

Names are queried as absolute names: no search list, no ndots, whatever resolv.conf says.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal, TypeVar

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from tlsrpt_reporter.config.schema import DnsSettings
from tlsrpt_reporter.deliver.dns_cache import AnswerCache
from tlsrpt_reporter.deliver.dns_setup import make_resolver
from tlsrpt_reporter.deliver.record import is_tlsrpt_record, select_record
from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import TlsRptError

log = logging.getLogger("tlsrpt-reporter")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SYSTEM_RESOLV_CONF = "/etc/resolv.conf"
_DETAIL_LENGTH = 300
# Lookups in a row that reached no nameserver, after which the rest of a pass asks none: a
# resolver that is down costs this many timeouts, not one per domain.
UNREACHABLE_AFTER = 3

T = TypeVar("T")


class DnsError(TlsRptError):
    """A DNS answer could not be used."""


class DnsTemporaryError(DnsError):
    """SERVFAIL, timeout or no reachable nameserver: the question has no answer yet; retry."""


class DnsUnreachable(DnsTemporaryError):
    """No nameserver answered at all (a timeout, REFUSED, a network error), or the resolver
    was found unreachable earlier in the pass and was not asked: a fault on this side, not
    the domain's."""


@dataclass(frozen=True)
class LookupResult:
    """The outcome of a TLSRPT record lookup.

    ``found``: ``record`` is the one TLSRPT record. ``none``: the domain has no usable record
    (NXDOMAIN, NODATA, no or several TLSRPT records, an invalid name): no report. ``temporary``:
    DNS did not answer; try again later. ``detail`` says what happened, for the log.
    """

    status: Literal["found", "none", "temporary"]
    record: str | None
    detail: str


@dataclass(frozen=True)
class MxRecords:
    """The MX records of a mail domain as published, for diagnostics (``check-record``).

    ``status`` tells NXDOMAIN and NODATA apart; ``records`` are (preference, exchange) pairs,
    most preferred first, with ``""`` as the exchange of a null MX (RFC 7505: the root).
    """

    status: Literal["ok", "nxdomain", "nodata"]
    records: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class _Answer:
    status: Literal["ok", "nxdomain", "nodata"]
    rdatas: tuple[dns.rdata.Rdata, ...]
    detail: str
    ttl: float | None = None  # of the records (None: there are none)


class Resolver:
    """The reporter's one way to ask DNS; configured once from :class:`DnsSettings`."""

    def __init__(
        self, settings: DnsSettings | None = None, resolv_conf: str = SYSTEM_RESOLV_CONF
    ) -> None:
        """Configure from ``settings``; ``resolv_conf`` is read only when no nameserver is set."""
        self.settings = settings or DnsSettings()
        self._resolver = make_resolver(self.settings, resolv_conf)
        self._unanswered = 0  # lookups in a row that reached no nameserver
        self.unreachable = ""  # why no more lookups are made in this pass ('' while asking)
        self._kept: AnswerCache[_Answer] = AnswerCache()

    def new_pass(self) -> None:
        """Ask the nameservers again: forget the unanswered lookups and the answers kept
        (:mod:`.dns_cache`) of an earlier pass."""
        self._unanswered = 0
        self.unreachable = ""
        self._kept.clear()

    @property
    def nameservers(self) -> tuple[str, ...]:
        """The servers queried, in order."""
        return tuple(str(server) for server in self._resolver.nameservers)

    async def lookup_tlsrpt(self, domain: str) -> LookupResult:
        """Look up the TLSRPT record of ``domain`` at ``_smtp._tls.<domain>`` (RFC 8460 §3)."""
        try:
            qname = _qname(f"_smtp._tls.{_domain(domain)}")
        except ValueError as exc:
            return LookupResult("none", None, f"not looking up {domain!r}: {exc}")
        try:
            answer = await self._query(qname, dns.rdatatype.TXT)
        except DnsTemporaryError as exc:
            # docs/sender-rules.md §1: a temporary failure is "try again later", never "no record".
            return LookupResult("temporary", None, str(exc))
        texts = [_txt_text(rdata) for rdata in answer.rdatas if isinstance(rdata, TXT)]
        record = select_record(texts)
        if record is not None:
            return LookupResult("found", record, f"{_show(qname)}: one TLSRPT record")
        if answer.status != "ok":
            return LookupResult("none", None, answer.detail)
        count = sum(1 for text in texts if is_tlsrpt_record(text))
        if count == 0:
            detail = f"{_show(qname)}: none of its {len(texts)} TXT records is a TLSRPT record"
        else:
            detail = (
                f"{_show(qname)}: {count} TLSRPT records; RFC 8460 §3 requires exactly one, "
                "so the domain gets no report"
            )
        return LookupResult("none", None, detail)

    async def addresses(self, host: str) -> list[IPAddress]:
        """The IPv4 then IPv6 addresses of ``host`` (an IP literal is returned as it is).

        Returns [] when the name does not exist, has no address records or is not a valid name.
        Raises DnsTemporaryError when DNS failed and no address was learnt.
        """
        try:
            return [ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))]
        except ValueError:
            pass
        try:
            qname = _qname(_domain(host))
        except ValueError:
            return []
        outcomes = await gather_lookups(
            self._query(qname, dns.rdatatype.A), self._query(qname, dns.rdatatype.AAAA)
        )
        found: list[IPAddress] = []
        failures: list[DnsTemporaryError] = []
        for outcome in outcomes:
            if isinstance(outcome, DnsTemporaryError):
                failures.append(outcome)
            else:
                for rdata in outcome.rdatas:
                    if isinstance(rdata, A | AAAA):
                        address = ipaddress.ip_address(rdata.address)
                        if address not in found:
                            found.append(address)
        # One family answering is enough to connect; only "nothing known" is worth a retry.
        if not found and failures:
            raise DnsTemporaryError("; ".join(str(failure) for failure in failures))
        return found

    async def mx_hosts(self, domain: str) -> list[str]:
        """The mail hosts of ``domain``, most preferred first, as lower-case names.

        No MX records means the domain itself (RFC 5321 §5.1). A null MX (RFC 7505), a name
        that does not exist or is invalid gives []: no mail can be delivered there. Raises
        DnsTemporaryError on SERVFAIL or timeout.
        """
        try:
            name = _domain(domain)
            qname = _qname(name)
        except ValueError:
            return []
        answer = await self._query(qname, dns.rdatatype.MX)
        if answer.status == "nxdomain":
            return []
        if answer.status == "nodata":
            return [name]  # RFC 5321 §5.1: the implicit MX
        preferred: list[tuple[int, str]] = [
            (rdata.preference, rdata.exchange.to_text(omit_final_dot=True).lower())
            for rdata in answer.rdatas
            # RFC 7505 §3: a null MX has the root as its exchange: "no mail here".
            if isinstance(rdata, MX) and rdata.exchange != dns.name.root
        ]
        # RFC 5321 §5.1: hosts of equal preference are tried in random order.
        random.shuffle(preferred)
        preferred.sort(key=lambda entry: entry[0])
        hosts: list[str] = []
        for _, host in preferred:
            if host not in hosts:
                hosts.append(host)
        return hosts

    async def mx_records(self, domain: str) -> MxRecords:
        """The MX records of ``domain`` as published, without the implicit MX of RFC 5321 §5.1.

        For diagnostics; delivery uses :meth:`mx_hosts`. An invalid name counts as NXDOMAIN.
        Raises DnsTemporaryError on SERVFAIL or timeout.
        """
        try:
            qname = _qname(_domain(domain))
        except ValueError:
            return MxRecords("nxdomain", ())
        answer = await self._query(qname, dns.rdatatype.MX)
        records = sorted(
            (
                rdata.preference,
                # RFC 7505 §3: a null MX has the root as its exchange.
                ""
                if rdata.exchange == dns.name.root
                else rdata.exchange.to_text(omit_final_dot=True).lower(),
            )
            for rdata in answer.rdatas
            if isinstance(rdata, MX)
        )
        return MxRecords(answer.status, tuple(records))

    async def txt_records(self, name: str) -> list[str]:
        """Every TXT record at ``name``, each with its strings joined; [] when there is none.

        Raises DnsTemporaryError on SERVFAIL or timeout.
        """
        try:
            qname = _qname(_domain(name))
        except ValueError:
            return []
        answer = await self._query(qname, dns.rdatatype.TXT)
        return [_txt_text(rdata) for rdata in answer.rdatas if isinstance(rdata, TXT)]

    async def txt(self, name: str) -> str:
        """The single TXT record at ``name`` (a DKIM key record), or "" when there is none.

        Raises DnsError when there are several and DnsTemporaryError on SERVFAIL or timeout.
        """
        records = await self.txt_records(name)
        if len(records) > 1:
            raise DnsError(f"{name} has {len(records)} TXT records; expected exactly one")
        return records[0] if records else ""

    async def _query(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Answer:
        kept = self._kept.get(qname, rdtype)
        if kept is not None:
            return kept
        what = f"{_show(qname)} {dns.rdatatype.to_text(rdtype)}"
        if self.unreachable:
            raise DnsUnreachable(f"{what}: not asked: {self.unreachable}")
        try:
            answer = await self._ask(qname, rdtype, what)
        except DnsUnreachable as exc:
            self._unanswered += 1
            if self._unanswered >= UNREACHABLE_AFTER and not self.unreachable:
                servers = ", ".join(f"{s} port {self.settings.port}" for s in self.nameservers)
                self.unreachable = (
                    f"DNS is unreachable: {self._unanswered} lookups in a row got no answer "
                    f"from {servers} (the last: {exc}): is the resolver running and "
                    "reachable? check [dns] nameservers (empty means /etc/resolv.conf)"
                )
            raise
        except DnsTemporaryError:
            self._unanswered = 0  # a server answered (SERVFAIL): the resolver is there
            raise
        self._unanswered = 0
        self._kept.put(qname, rdtype, answer, answer.ttl)
        return answer

    async def _ask(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, what: str
    ) -> _Answer:
        timeout = self.settings.timeout
        try:
            # dnspython enforces the lifetime; the outer bound only guards against a stuck
            # transport so that a daemon loop can never hang on DNS.
            answer = await asyncio.wait_for(
                self._resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False),
                timeout + 1.0,
            )
        except dns.resolver.NXDOMAIN:
            return _Answer("nxdomain", (), f"{_show(qname)} does not exist (NXDOMAIN)")
        except dns.resolver.YXDOMAIN:
            return _Answer("nxdomain", (), f"{_show(qname)} is too long after DNAME rewriting")
        except (dns.exception.Timeout, TimeoutError):
            raise DnsUnreachable(f"{what}: no answer within {timeout:g}s") from None
        except dns.resolver.NoNameservers as exc:
            # Every server answered SERVFAIL or REFUSED, or could not be reached.
            error = DnsUnreachable if _none_served(exc) else DnsTemporaryError
            raise error(f"{what}: no nameserver answered: {_brief(exc)}") from None
        except OSError as exc:
            raise DnsUnreachable(f"{what}: lookup failed: {_brief(exc)}") from None
        except dns.exception.DNSException as exc:
            raise DnsTemporaryError(f"{what}: lookup failed: {_brief(exc)}") from None
        if answer.rrset is None:
            return _Answer("nodata", (), f"{what}: no such records (NODATA)")
        rrset = answer.rrset
        return _Answer("ok", tuple(rrset), f"{what}: {len(rrset)} records", float(rrset.ttl))


async def gather_lookups(*lookups: Awaitable[T]) -> list[T | DnsTemporaryError]:
    """Run DNS ``lookups`` at once: each one's answer, or the DnsTemporaryError it failed with
    (the others may still have answered); any other exception is raised."""
    outcomes = await asyncio.gather(*lookups, return_exceptions=True)
    results: list[T | DnsTemporaryError] = []
    for outcome in outcomes:
        if isinstance(outcome, DnsTemporaryError):
            results.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            results.append(outcome)
    return results


def _none_served(exc: dns.resolver.NoNameservers) -> bool:
    """Whether no server served the question: each one refused it or could not be reached.
    A SERVFAIL is an answer (the resolver works; the domain's own servers may not), whereas a
    REFUSED from our own resolver means it will not serve this host."""
    for error in exc.kwargs.get("errors", []):
        response = error[4] if len(error) > 4 else None
        if isinstance(response, dns.message.Message) and response.rcode() != dns.rcode.REFUSED:
            return False
    return True


def _domain(name: str) -> str:
    """``name`` as a lower-case A-label without trailing dot; ValueError when it is not a name."""
    return normalize_domain(name)


def _qname(text: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text, origin=dns.name.root)
    except dns.exception.DNSException as exc:  # a label over 63 or a name over 255 octets
        raise ValueError(f"{text[:80]!r} is not a valid DNS name: {exc}") from None


def _txt_text(rdata: TXT) -> str:
    # RFC 8460 §3: the character-strings of one record are joined with no separator.
    return b"".join(rdata.strings).decode("utf-8", errors="replace")


def _show(qname: dns.name.Name) -> str:
    return qname.to_text(omit_final_dot=True)


def _brief(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _DETAIL_LENGTH else text[:_DETAIL_LENGTH] + "..."
