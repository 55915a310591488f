"""RFC 8460 report building: a day's aggregates for one report domain -> report bytes.

Pure code: export-shaped lines in (docs/operating.md; one or many sources, equal policies and
failure details are merged by adding), a frozen :class:`BuiltReport` out. No I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tlsrpt_reporter.config.identity import submitter_domain
from tlsrpt_reporter.config.values import instance_id
from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import ConfigError, TlsRptError
from tlsrpt_reporter.model import DETAIL_FIELDS, RESULT_TYPES

_IP_FIELDS = ("sending-mta-ip", "receiving-ip")


class ReportError(TlsRptError):
    """A report cannot be built from the given data or identity."""


@dataclass(frozen=True)
class Identity:
    """Who sends the reports (RFC 8460 §4.4 organization-name, contact-info), and which reporter
    instance builds them (its part of every Report-ID; '' leaves it out)."""

    organization_name: str
    contact_info: str
    instance: str = ""

    @property
    def submitter(self) -> str:
        """The TLS-Report-Submitter: the domain of contact-info (RFC 8460 §5.3)."""
        return self.contact_info.rpartition("@")[2].lower()


@dataclass(frozen=True)
class Totals:
    """Session counts of a report, for logs and the human-readable text."""

    successful: int
    failed: int
    policies: int
    failure_details: int
    capped: int  # failure-detail entries folded away by the cap


@dataclass(frozen=True)
class BuiltReport:
    """One report, ready to store and send; its bytes never change after building."""

    domain: str
    day: str
    report_id: str  # a msg-id without angle brackets: left@right
    filename: str
    document: dict[str, Any]
    json_bytes: bytes
    gzip_bytes: bytes
    totals: Totals


def report_id(day: str, domain: str, submitter: str, instance: str = "") -> str:
    """A stable Report-ID for (day, domain, submitter, reporter instance): retries and rebuilds
    reuse it, so a receiver can drop duplicates (RFC 8460 §5.3), and two reporter instances of
    one submitter never send the same one (RFC 8460 §4.4: the id is unique)."""
    middle = f"{instance}." if instance else ""
    return f"{day.replace('-', '.')}.{middle}{_short_hash(domain)}@{submitter}"


def _short_hash(domain: str) -> str:
    return hashlib.blake2b(domain.encode(), digest_size=8).hexdigest()


def day_range(day: str) -> tuple[int, int]:
    """The first and last second of a UTC day as Unix times."""
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    first = int(start.timestamp())
    return first, first + 86399


def filename(submitter: str, domain: str, day: str, instance: str = "") -> str:
    """RFC 8460 §5.1 file name; the unique-id (letters and digits only) tells apart the reports
    of one domain from different reporter instances."""
    first, last = day_range(day)
    return f"{submitter}!{domain}!{first}!{last}!{instance}{_short_hash(domain)}.json.gz"


def build(
    day: str,
    domain: str,
    lines: Iterable[Mapping[str, Any]],
    identity: Identity,
    max_failure_details: int = 1000,
    *,
    sending_mta_ip: str = "as-seen",
) -> BuiltReport:
    """Build the report of ``domain`` for ``day`` from its export lines.

    Lines of other domains or days are ignored. ``sending_mta_ip`` is ``reporter.sending_mta_ip``
    (see :func:`_our_ip`). Raises ReportError when there is nothing to report or the identity is
    unusable.
    """
    _check_identity(identity)
    merged = _merge(
        (line for line in lines if line["day"] == day and line["domain"] == domain), sending_mta_ip
    )
    if not merged:
        raise ReportError(f"no data for {domain} on {day}")
    policies = []
    successful = failed = details_total = capped = 0
    for (policy_key, _), (counts, details) in sorted(merged.items(), key=lambda kv: kv[0][1]):
        entry: dict[str, Any] = {
            "policy": _policy(policy_key),
            "summary": {
                "total-successful-session-count": counts[0],
                "total-failure-session-count": counts[1],
            },
        }
        successful += counts[0]
        failed += counts[1]
        # Largest counts first, then a stable order; the cap keeps reports well under the
        # 10 MB receivers accept (docs/sender-rules.md §3); the summary still counts every session.
        ordered = sorted(details.items(), key=lambda kv: (-kv[1], kv[0]))
        capped += max(0, len(ordered) - max_failure_details)
        kept = ordered[:max_failure_details]
        if kept:
            entry["failure-details"] = [_detail(fields, n) for fields, n in kept]
            details_total += len(kept)
        policies.append(entry)
    first, last = day_range(day)
    rid = report_id(day, domain, identity.submitter, identity.instance)
    # RFC 8460 §4.4: key order as in the RFC's example; one full UTC day (ecosystem practice).
    document = {
        "organization-name": identity.organization_name,
        "date-range": {
            "start-datetime": _rfc3339(first),
            "end-datetime": _rfc3339(last),
        },
        "contact-info": identity.contact_info,
        "report-id": rid,
        "policies": policies,
    }
    json_bytes = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    return BuiltReport(
        domain=domain,
        day=day,
        report_id=rid,
        filename=filename(identity.submitter, domain, day, identity.instance),
        document=document,
        json_bytes=json_bytes,
        gzip_bytes=gzip.compress(json_bytes, compresslevel=9, mtime=0),
        totals=Totals(successful, failed, len(policies), details_total, capped),
    )


def _check_identity(identity: Identity) -> None:
    if not identity.organization_name.strip():
        raise ConfigError("reporter.organization_name is empty: set your organisation's name")
    local, _, domain = identity.contact_info.rpartition("@")
    if not local or not domain or any(c.isspace() or c in '<>"' for c in identity.contact_info):
        raise ConfigError(
            f"reporter.contact_info {identity.contact_info!r} is not an address like "
            "tlsrpt@example.net"
        )
    # What the report schema wants of contact-info's domain, checked as check-config does.
    submitter_domain("reporter.contact_info", identity.contact_info)
    if identity.instance:
        instance_id("reporter.instance_id", identity.instance)


# (policy-type, policy-domain, policy-string, mx-host) ; details keyed by their field tuple.
_PolicyKey = tuple[str, str, tuple[str, ...], tuple[str, ...]]
_DetailKey = tuple[str, ...]


def _merge(
    lines: Iterable[Mapping[str, Any]],
    sending_mta_ip: str = "as-seen",
) -> dict[tuple[_PolicyKey, str], tuple[list[int], dict[_DetailKey, int]]]:
    merged: dict[tuple[_PolicyKey, str], tuple[list[int], dict[_DetailKey, int]]] = {}
    for line in lines:
        p = line["policy"]
        policy_type = p["policy-type"]
        key: _PolicyKey = (
            policy_type,
            p["policy-domain"],
            tuple(p.get("policy-string", ())),
            # RFC 8460 §4.4: mx-host belongs to MTA-STS policies only.
            tuple(_mx_pattern(m) for m in p.get("mx-host", ())) if policy_type == "sts" else (),
        )
        sort_key = json.dumps(key)
        counts, details = merged.setdefault((key, sort_key), ([0, 0], {}))
        summary = line["summary"]
        counts[0] += summary["total-successful-session-count"]
        counts[1] += summary["total-failure-session-count"]
        for d in line.get("failure-details", ()):
            dkey = _detail_key(d, sending_mta_ip)
            details[dkey] = details.get(dkey, 0) + d["failed-session-count"]
    return merged


def _detail_key(d: Mapping[str, Any], sending_mta_ip: str = "as-seen") -> _DetailKey:
    result_type = d["result-type"]
    if result_type not in RESULT_TYPES:
        raise ReportError(f"unknown result-type {result_type!r} in the collected data")
    values = [result_type]
    for name in DETAIL_FIELDS:
        value = d.get(name) or ""
        if value and name in _IP_FIELDS and not _is_ip(value):
            value = ""  # strict consumers reject anything but an IP address here (§8)
        if value and name == "sending-mta-ip":
            value = _our_ip(value, sending_mta_ip)
        values.append(value)
    return tuple(values)


def _our_ip(value: str, setting: str) -> str:
    """Our own MTA's address as the report shows it (reporter.sending_mta_ip): "as-seen" keeps
    it; a non-global one (behind NAT: private, loopback, ...) is left out with "omit-private"
    and replaced by the address ``setting`` names otherwise. A global address always stays;
    details equal after this merge like any others."""
    if setting == "as-seen" or ipaddress.ip_address(value).is_global:
        return value
    return "" if setting == "omit-private" else setting


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _mx_pattern(pattern: str) -> str:
    """An MTA-STS mx pattern as an A-label (RFC 8461 §4.1 allows a leading "*.")."""
    wildcard = pattern.startswith("*.")
    try:
        name = normalize_domain(pattern[2:] if wildcard else pattern)
    except ValueError:
        return pattern
    return f"*.{name}" if wildcard else name


def _policy(key: _PolicyKey) -> dict[str, Any]:
    policy_type, policy_domain, strings, mx_hosts = key
    # RFC 8460 §4.4: policy-string is an array (empty for no-policy-found); mx-host an array
    # (erratum 6241: never a bare string).
    out: dict[str, Any] = {
        "policy-type": policy_type,
        "policy-string": list(strings),
        "policy-domain": policy_domain,
    }
    if policy_type == "sts":
        out["mx-host"] = list(mx_hosts)
    return out


def _detail(fields: _DetailKey, count: int) -> dict[str, Any]:
    out: dict[str, Any] = {"result-type": fields[0]}
    for name, value in zip(DETAIL_FIELDS, fields[1:], strict=True):
        if value:  # never null or "" (docs/sender-rules.md §3)
            out[name] = value
    out["failed-session-count"] = count
    return out


def _rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_EXPLANATIONS = {
    "starttls-not-supported": "the receiving MX did not offer STARTTLS",
    "certificate-host-mismatch": "the MX certificate does not match the MX host name",
    "certificate-expired": "the MX certificate has expired",
    "certificate-not-trusted": "the MX certificate is not signed by a trusted authority",
    "validation-failure": "TLS could not be validated (other reason, see the reason code)",
    "tlsa-invalid": "the TLSA records did not match the MX certificate (DANE)",
    "dnssec-invalid": "DNSSEC validation of the TLSA lookup failed (DANE)",
    "dane-required": "DANE was required but no usable TLSA records were found",
    "sts-policy-fetch-error": "the MTA-STS policy could not be fetched",
    "sts-policy-invalid": "the MTA-STS policy could not be parsed",
    "sts-webpki-invalid": "the MTA-STS policy host's HTTPS certificate is not valid",
}


def summary_text(report: BuiltReport, identity: Identity) -> str:
    """The human-readable text part of a report mail (RFC 8460 §5.3)."""
    t = report.totals
    first, last = day_range(report.day)
    lines = [
        f"This is an SMTP TLS report (RFC 8460) from {identity.organization_name} "
        f"for mail sent to {report.domain}.",
        "",
        f"Period:     {_rfc3339(first)} to {_rfc3339(last)}",
        f"Report-ID:  <{report.report_id}>",
        f"Sessions:   {t.successful + t.failed} ({t.successful} successful, {t.failed} failed)",
        f"Policies:   {t.policies}",
    ]
    failures: dict[str, int] = {}
    for entry in report.document["policies"]:
        for d in entry.get("failure-details", ()):
            name = d["result-type"]
            failures[name] = failures.get(name, 0) + d["failed-session-count"]
    if failures:
        lines += ["", "Failures:"]
        for name, n in sorted(failures.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {n:8d}  {name}: {_EXPLANATIONS[name]}")
    if t.capped:
        lines += ["", f"{t.capped} less frequent failure details were left out of the report."]
    lines += [
        "",
        "The attached file holds the machine-readable report.",
        f"Questions about this report: {identity.contact_info}",
    ]
    return "\n".join(lines) + "\n"


def domains_of(lines: Sequence[Mapping[str, Any]], day: str) -> list[str]:
    """The report domains present in ``lines`` for ``day``, sorted."""
    return sorted({line["domain"] for line in lines if line["day"] == day})


def mx_host_lines(lines: Iterable[Mapping[str, Any]], day: str) -> dict[str, list[dict[str, Any]]]:
    """The DANE lines of ``day`` regrouped by the MX host they name, for MX-host reports.

    RFC 8460 §1.1: the policy domain of a DANE policy is the TLSA base domain, usually the
    MX host, so that host may ask for reports of its own. Each ``tlsa`` line of every recipient
    domain goes to the host in its ``policy-domain`` (as a lower-case A-label), relabelled as a
    line of that host with no known record; :func:`build` then merges them like any others.
    A line whose host is its own recipient domain is left out: it already is in that domain's
    report, and counting it twice would double its sessions. One pass over ``lines``.
    """
    hosts: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        policy = line["policy"]
        if line["day"] != day or policy["policy-type"] != "tlsa":
            continue  # only DANE policies have an MX host as their policy domain
        try:
            host = normalize_domain(policy["policy-domain"])
        except ValueError:
            continue  # not a host name (a cmd: source's data is checked less strictly)
        if host == line["domain"]:
            continue
        # The policy domain in its normal form too, so differently spelled lines merge.
        relabelled = {
            **line,
            "domain": host,
            "record": "",
            "policy": {**policy, "policy-domain": host},
        }
        hosts.setdefault(host, []).append(relabelled)
    return hosts
