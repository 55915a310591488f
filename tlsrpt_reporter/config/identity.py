"""Who the reports come from: the submitter named by ``reporter.contact_info``, and the DKIM keys
that sign as it.

RFC 8460 §5.3: the TLS-Report-Submitter is the domain of contact-info, and the report mail is
DKIM-signed by the submitter: a ``[[reporter.mail.dkim]]`` key must sign with ``d=`` equal to
that domain or to its organisational domain (the Public Suffix List's, as DMARC has it). This
module owns those rules, pure: ``config.load`` checks ``contact_info`` with
:func:`contact_info`, ``report.document`` the identity it builds with :func:`submitter_domain`,
and ``check-config``, ``send`` and ``run`` the keys with :func:`signers`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlsrpt_reporter.config import values as v
from tlsrpt_reporter.config.schema import DkimConfig, ReporterConfig
from tlsrpt_reporter.domain import normalize_domain, organizational_domain
from tlsrpt_reporter.errors import ConfigError


def contact_info(name: str, value: object) -> str:
    """An address whose domain a report can carry as written (:func:`submitter_domain`)."""
    text = v.address(name, value)
    if text:
        submitter_domain(name, text)
    return text


def submitter_domain(name: str, contact_info: str) -> str:
    """The TLS-Report-Submitter: the domain of ``contact_info`` in lower case (RFC 8460 §5.3).

    It is also the right side of every Report-ID (a msg-id, RFC 8460 §4.4) and stands in the
    report's contact-info as written, so it must be a host name of ASCII letters, digits and
    hyphens (an internationalised name as its A-label) without a trailing dot: the report
    schema refuses anything else. ConfigError names the spelling to use.
    """
    local, _, written = contact_info.rpartition("@")
    canonical = v.domain(name, written)
    if written.lower() == canonical and "_" not in canonical and "." in canonical:
        return canonical
    if written.lower() != canonical:
        fix = f"write it as {local}@{canonical}"
    else:
        fix = "use a host name of letters, digits and hyphens with at least two labels"
    raise ConfigError(
        f"{name} {contact_info!r}: its domain is the TLS-Report-Submitter and the right side "
        f"of every Report-ID, which carry lower-case ASCII names (A-labels) only: {fix}"
    )


@dataclass(frozen=True)
class Signers:
    """The ``[[reporter.mail.dkim]]`` keys split by whether they sign as the submitter."""

    submitter: str
    organizational: str
    aligned: tuple[DkimConfig, ...]
    others: tuple[DkimConfig, ...]

    @property
    def problem(self) -> str:
        """Why nothing may be sent ('' when a key signs as the submitter)."""
        if self.aligned:
            return ""
        names = f"{self.submitter}" + (
            "" if self.organizational == self.submitter else f" or {self.organizational}"
        )
        return (
            f"no [[reporter.mail.dkim]] key signs as the submitter {self.submitter} (the domain "
            f"of reporter.contact_info) or its organisational domain {self.organizational}; "
            f"keys seen: {_seen(self.others)}. RFC 8460 §5.3: the report mail is signed by the "
            f"submitter: add a key whose domain is {names}, or change reporter.contact_info"
        )

    def warnings(self) -> list[str]:
        """One line per key that signs as another domain, when one does sign as the submitter."""
        if not self.aligned:
            return []
        return [
            f"the key {_seen((key,))} does not sign as the submitter {self.submitter}: its "
            f"signature is extra; the one receivers match is {_seen(self.aligned)}"
            for key in self.others
        ]


def signers(rep: ReporterConfig) -> Signers | None:
    """Which keys sign as the submitter; None without a contact_info or without keys (that
    is already reported as missing, and nothing is sent then)."""
    if not rep.contact_info or not rep.mail.dkim:
        return None
    submitter = submitter_domain("reporter.contact_info", rep.contact_info)
    organizational = organizational_domain(submitter)
    aligned = tuple(k for k in rep.mail.dkim if _domain(k) in (submitter, organizational))
    others = tuple(k for k in rep.mail.dkim if k not in aligned)
    return Signers(submitter, organizational, aligned, others)


def _domain(key: DkimConfig) -> str:
    try:
        return normalize_domain(key.domain)
    except ValueError:
        return key.domain


def _seen(keys: tuple[DkimConfig, ...]) -> str:
    return ", ".join(f"d={k.domain} s={k.selector}" for k in keys)
