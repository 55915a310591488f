"""``check-record``: lint a domain's ``_smtp._tls`` record the way a report sender would use it.

This module owns the verdict on one domain's TLSRPT setup: how many TLSRPT records DNS holds
(RFC 8460 §3: exactly one), whether the record parses (:mod:`tlsrpt_reporter.deliver.record`), and
whether each ``rua`` can take a report: an ``https:`` host must resolve to addresses the sender
may use (the SSRF rules of :mod:`tlsrpt_reporter.deliver.https`) and answer over TLS with a
valid certificate; a ``mailto:`` domain must accept mail (MX, or A/AAAA per RFC 5321 §5.1, and
no null MX, RFC 7505). Every observation is a :class:`Finding`: ``ok``, ``warning`` or ``error``.

DNS goes through :class:`tlsrpt_reporter.deliver.resolver.Resolver` and the TLS look through
:mod:`tlsrpt_reporter.deliver.https_probe`; the judging functions are pure. It must never send a
report, and never connect to an address the sender itself would refuse.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.config.schema import HttpsSettings
from tlsrpt_reporter.deliver import https_probe
from tlsrpt_reporter.deliver.addresses import IPAddress
from tlsrpt_reporter.deliver.https import (
    ForbiddenAddress,
    InvalidReportUrl,
    ReportUrl,
    check_address,
    parse_report_url,
    split_addresses,
)
from tlsrpt_reporter.deliver.record import RecordError, ReportURI, is_tlsrpt_record, parse_record
from tlsrpt_reporter.deliver.resolver import (
    DnsTemporaryError,
    MxRecords,
    Resolver,
    gather_lookups,
)
from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import ConfigError

Level = Literal["ok", "warning", "error"]
Probe = Callable[[ReportUrl, IPAddress, HttpsSettings, float], Awaitable[https_probe.ProbeResult]]

EXIT_OK, EXIT_FAILURE = 0, 1
# An operator waits at the terminal: each address gets at most this long, whatever
# reporter.https.timeout says.
PROBE_TIMEOUT = 10.0
# A certificate this close to its end is worth a warning: the report may arrive after it.
EXPIRY_WARNING_DAYS = 14
# Enough to show a domain's mail setup without a hundred lookups for an odd one.
MAX_MX_HOSTS = 5
MAX_ADDRESSES = 4


@dataclass(frozen=True)
class Finding:
    """One observation: ``subject`` is the DNS name, ``record`` or the rua it is about."""

    level: Level
    subject: str
    text: str


@dataclass(frozen=True)
class RecordCheck:
    """The whole verdict: ``usable`` when some sender could deliver a report to some rua."""

    domain: str
    record: str | None
    usable: bool
    findings: tuple[Finding, ...]


def lint_txt(qname: str, texts: Sequence[str]) -> tuple[list[Finding], str | None]:
    """Findings about the TXT records at ``qname``, and the one TLSRPT record (None: unusable).

    Pure: RFC 8460 §3's "exactly one record starting with v=TLSRPTv1", plus a warning for each
    record that was probably meant as one but does not count (wrong case, no ``;``).
    """
    findings: list[Finding] = []
    records = [text for text in texts if is_tlsrpt_record(text)]
    for text in texts:
        if not is_tlsrpt_record(text) and text.lstrip().lower().startswith("v=tlsrpt"):
            findings.append(
                Finding(
                    "warning",
                    qname,
                    f"TXT {text!r} is not counted as a TLSRPT "
                    "record: it must start with 'v=TLSRPTv1;' exactly",
                )
            )
    if not records:
        what = (
            f"none of its {len(texts)} TXT records is a TLSRPT record"
            if texts
            else f"{qname} has no TXT record"
        )
        findings.append(Finding("error", qname, f"{what}: senders send no reports"))
        return findings, None
    if len(records) > 1:
        # RFC 8460 §3: more than one TLSRPT record means the domain does not implement TLSRPT.
        listed = "; ".join(repr(text) for text in records)
        findings.append(
            Finding(
                "error",
                qname,
                f"{len(records)} TLSRPT records ({listed}): RFC "
                "8460 §3 requires exactly one, so senders send no reports; "
                "keep one",
            )
        )
        return findings, None
    findings.append(Finding("ok", qname, f"one TLSRPT record: {records[0]!r}"))
    return findings, records[0]


def lint_record(record: str) -> tuple[list[Finding], tuple[ReportURI, ...]]:
    """Findings about the record's grammar and rua list, and its usable destinations. Pure."""
    try:
        parsed = parse_record(record)
    except RecordError as exc:
        return [Finding("error", "record", f"{exc}; senders ignore the record")], ()
    findings = [Finding("warning", "record", note) for note in parsed.ignored]
    if not parsed.uris:
        findings.append(
            Finding(
                "error",
                "record",
                "no usable rua URI (mailto: or https:): senders have nowhere to send reports",
            )
        )
    else:
        findings.append(
            Finding(
                "ok",
                "record",
                f"grammar valid; {len(parsed.uris)} "
                "destination(s): " + ", ".join(map(str, parsed.uris)),
            )
        )
    return findings, parsed.uris


def judge_probe(
    result: https_probe.ProbeResult, settings: HttpsSettings, now: float, note: str = ""
) -> tuple[bool, Level, str]:
    """(works, level, text) for one probed address; ``note`` follows the address. Pure."""
    where = f"{result.address}{note}:"
    if result.certificate_error and settings.verify_certificates:
        return (
            False,
            "error",
            (
                f"{where} TLS certificate not valid: {result.certificate_error}; "
                "the reporter refuses to post there"
            ),
        )
    if result.error:
        return False, "error", f"{where} {result.error}"
    answer = "answered HEAD with " + f"HTTP {result.status} {result.reason}".strip()
    tls = f"{result.tls_version or 'TLS'} handshake ok"
    if result.certificate_error:
        return (
            True,
            "warning",
            (
                f"{where} {tls}, but the certificate is not valid "
                f"({result.certificate_error}); the reporter posts anyway "
                f"(reporter.https.verify_certificates = false); {answer}"
            ),
        )
    days_left = None if result.not_after is None else (result.not_after - now) / 86400
    cert = "certificate valid"
    if days_left is not None:
        cert += f", expires in {days_left:.0f} days"
    text = f"{where} {tls}, {cert}, {answer}"
    if result.status in (404, 410):
        return True, "warning", f"{text}: the path does not exist there; a POST will likely fail"
    if days_left is not None and days_left < EXPIRY_WARNING_DAYS:
        return True, "warning", f"{text}: renew the certificate soon"
    # A POST-only endpoint may well refuse HEAD (405, 501): the server answered, that is the point.
    return True, "ok", text


async def check(
    domain: str,
    resolver: Resolver,
    settings: HttpsSettings,
    probe: Probe = https_probe.probe,
    now: float | None = None,
) -> RecordCheck:
    """Look up and judge the TLSRPT setup of ``domain`` (already a valid domain name)."""
    qname = f"_smtp._tls.{domain}"
    try:
        texts = await resolver.txt_records(qname)
    except DnsTemporaryError as exc:
        # docs/sender-rules.md §1: a temporary failure is "ask again", never "no record".
        text = (
            f"DNS lookup failed ({exc}); this says nothing about whether the record "
            "exists: try again, or check dns.nameservers"
        )
        return RecordCheck(domain, None, False, (Finding("error", qname, text),))
    findings, record = lint_txt(qname, texts)
    if record is None:
        return RecordCheck(domain, None, False, tuple(findings))
    more, uris = lint_record(record)
    findings += more
    moment = time.time() if now is None else now
    outcomes = await asyncio.gather(
        *(_destination(uri, resolver, settings, probe, moment) for uri in uris)
    )
    working = 0
    for works, found in outcomes:
        working += works
        findings += found
    if uris:
        level: Level = "ok" if working else "error"
        verdict = "usable" if working else "not usable"
        findings.append(
            Finding(
                level, qname, f"{verdict}: {working} of {len(uris)} destination(s) can take reports"
            )
        )
    return RecordCheck(domain, record, working > 0, tuple(findings))


async def _destination(
    uri: ReportURI, resolver: Resolver, settings: HttpsSettings, probe: Probe, now: float
) -> tuple[bool, list[Finding]]:
    if uri.scheme == "mailto":
        return await _mailto(uri, resolver)
    return await _https(uri, resolver, settings, probe, now)


async def _https(
    uri: ReportURI, resolver: Resolver, settings: HttpsSettings, probe: Probe, now: float
) -> tuple[bool, list[Finding]]:
    subject = str(uri)
    try:
        target = parse_report_url(uri.value)
    except InvalidReportUrl as exc:
        return False, [Finding("error", subject, str(exc))]
    try:
        candidates = await resolver.addresses(target.host)
    except DnsTemporaryError as exc:
        return False, [Finding("error", subject, f"DNS lookup of {target.host} failed: {exc}")]
    if not candidates:
        return False, [Finding("error", subject, f"{target.host} has no A or AAAA record")]
    allowed, refused = split_addresses(candidates[:MAX_ADDRESSES], settings)
    # RFC 8460 §7: the sender refuses these (SSRF); so does the probe: nothing connects there.
    results = await asyncio.gather(
        *(probe(target, ip, settings, min(settings.timeout, PROBE_TIMEOUT)) for ip in allowed)
    )
    judged = [
        judge_probe(result, settings, now, _allow_listed(ip))
        for ip, result in zip(allowed, results, strict=True)
    ]
    works = any(ok for ok, _, _ in judged)
    # One address that works is enough: the sender tries them in order.
    fail_level: Level = "warning" if works else "error"
    findings = [Finding(fail_level, subject, f"refused: {text}") for text in refused]
    for ok, level, text in judged:
        findings.append(Finding(level if ok else fail_level, subject, text))
    return works, findings


def _allow_listed(ip: IPAddress) -> str:
    """A note for an address that passed only thanks to ``allow_private``, else ""."""
    try:
        check_address(ip, HttpsSettings())
    except ForbiddenAddress:
        return " (not a public address; allowed by reporter.https.allow_private)"
    return ""


async def _mailto(uri: ReportURI, resolver: Resolver) -> tuple[bool, list[Finding]]:
    """Look up the mailto domain's MX and address records; the verdict is the pure judges'."""
    domain = uri.host
    try:
        mx = await resolver.mx_records(domain)
    except DnsTemporaryError as exc:
        return False, [Finding("error", str(uri), f"DNS lookup of MX {domain} failed: {exc}")]
    hosts, findings = judge_mx(uri, mx)
    if hosts is None:
        return False, findings
    shown = hosts[:MAX_MX_HOSTS]
    lookups = await gather_lookups(*(resolver.addresses(host) for host in shown))
    answers: list[list[IPAddress] | None] = [
        None if isinstance(found, DnsTemporaryError) else found for found in lookups
    ]
    reachable, verdict = judge_mail_hosts(uri, shown, answers, implicit=not mx.records)
    return reachable, [*findings, verdict]


def judge_mx(uri: ReportURI, mx: MxRecords) -> tuple[list[str] | None, list[Finding]]:
    """The hosts a mailto rua's domain takes mail on (None: none at all) and what to say.

    No MX at all means the domain's own address records (RFC 5321 §5.1); a null MX alone means
    no mail (RFC 7505).
    """
    subject, domain = str(uri), uri.host
    if mx.status == "nxdomain":
        return None, [Finding("error", subject, f"mail domain {domain} does not exist (NXDOMAIN)")]
    hosts = [host for _, host in mx.records if host]
    if mx.records and not hosts:
        text = f"{domain} has a null MX (RFC 7505): it accepts no mail, so report mails bounce"
        return None, [Finding("error", subject, text)]
    findings: list[Finding] = []
    if len(hosts) < len(mx.records):
        findings.append(
            Finding(
                "warning",
                subject,
                f"{domain} mixes a null MX with real MX "
                "records (RFC 7505 §3 forbids it); the null MX is ignored",
            )
        )
    return hosts or [domain], findings


def judge_mail_hosts(
    uri: ReportURI,
    hosts: Sequence[str],
    answers: Sequence[Sequence[IPAddress] | None],
    *,
    implicit: bool,
) -> tuple[bool, Finding]:
    """Whether any mail host of a mailto rua has an address, and the finding that says so.

    ``answers`` holds each host's addresses, None where the lookup failed; ``implicit`` means
    the domain has no MX and its own name is the host.
    """
    subject, domain = str(uri), uri.host
    parts: list[str] = []
    reachable = False
    for host, found in zip(hosts, answers, strict=True):
        if found is None:
            parts.append(f"{host} (DNS lookup failed)")
        elif found:
            reachable = True
            parts.append(f"{host} ({', '.join(map(str, found[:MAX_ADDRESSES]))})")
        else:
            parts.append(f"{host} (no address)")
    if implicit and not reachable:
        text = f"{domain} has no MX and no A/AAAA record: report mails cannot be delivered"
        return False, Finding("error", subject, text)
    if implicit:
        text = (
            f"{domain} has no MX record; mail goes to its address records (RFC 5321 §5.1): "
            f"{', '.join(parts)}"
        )
        return True, Finding("ok", subject, text)
    if reachable:
        return True, Finding("ok", subject, f"MX of {domain}: {', '.join(parts)}")
    text = f"no MX host of {domain} has an address: {', '.join(parts)}"
    return False, Finding("error", subject, text)


def render(result: RecordCheck) -> str:
    """The findings as lines of text, one per finding, level first."""
    return "".join(f"{f.level:8} {f.subject}: {f.text}\n" for f in result.findings)


def render_json(result: RecordCheck) -> str:
    """The verdict as one JSON document."""
    return json.dumps(asdict(result), indent=2, ensure_ascii=False) + "\n"


def command(config_path: str | None, domain: str, as_json: bool) -> int:
    """``tlsrpt-reporter check-record DOMAIN``: print the findings; 0 usable, 1 not."""
    try:
        name = normalize_domain(domain)
    except ValueError as exc:
        raise ConfigError(f"check-record: {domain!r} is not a domain name: {exc}") from None
    cfg = load_config(config_path)
    resolver = Resolver(cfg.dns)
    settings = cfg.reporter.https
    result = asyncio.run(check(name, resolver, settings))
    print(render_json(result) if as_json else render(result), end="")
    return EXIT_OK if result.usable else EXIT_FAILURE
