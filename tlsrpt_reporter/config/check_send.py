"""What ``tlsrpt-reporter check-config`` says about sending, apart from the DKIM keys
themselves (``config.check`` tries those with the deliver code): what is missing, the sources,
who the mail comes from, the relay's password file, ``reporter.redirect``, and what
``sign_by = "relay"`` leaves unchecked.

It reads files and looks at directories, and changes nothing; it runs no ``cmd:`` source.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tlsrpt_reporter.config import identity
from tlsrpt_reporter.config.findings import Finding
from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.config.source_syntax import command_words, is_command, is_postgresql
from tlsrpt_reporter.domain import organizational_domain
from tlsrpt_reporter.errors import ConfigError, os_fix


def missing(rep: ReporterConfig) -> list[Finding]:
    """One ``missing`` line per setting without which nothing is sent."""
    return [
        Finding("missing", f"sending: {item} is not set; reports are built but never sent")
        for item in rep.missing_identity()
    ]


def source(name: str) -> Finding:
    """Whether a source can be read (a ``cmd:`` source's program found; it is not run; the
    fleet's PostgreSQL is not connected to)."""
    if is_postgresql(name):
        hosts = getattr(name, "expected_hosts", ())
        if not hosts:
            return Finding("warning", f"source {name}: no reporter.expected_hosts, so a host "
                           "that stops pushing goes unnoticed (docs/fleet.md)")  # fmt: skip
        return Finding("ok", f"source {name} (not connected now), expecting pushes from "
                       f"{', '.join(hosts)}")  # fmt: skip
    if is_command(name):
        program = command_words(name, "2000-01-01")[0]
        if shutil.which(program):
            return Finding("ok", f"source {name}: {program} found (not run now)")
        return Finding("error", f"source {name}: cannot find {program}: install it or use a "
                       "full path")  # fmt: skip
    try:
        exists = Path(name).exists()
    except OSError as exc:
        return Finding("error", f"source {name}: {os_fix(exc, name)}")
    if exists:
        return Finding("ok", f"source {name}")
    return Finding("warning", f"source {name} does not exist yet (the collector creates it)")


def mail_identity(rep: ReporterConfig) -> list[Finding]:
    """The From address against the submitter, the relay's password file, and the redirect."""
    return [*_from_domain(rep), *_password_file(rep), *_redirect(rep)]


def signers(rep: ReporterConfig) -> list[Finding]:
    """RFC 8460 §5.3: a key signs as the submitter (``send`` and ``run`` refuse otherwise); with
    ``sign_by = "relay"``, what check-config cannot see and the caveat."""
    try:
        signing = identity.signers(rep)
        submitter = _submitter(rep)
    except ConfigError as exc:  # a contact_info built in code, not read from the file
        return [Finding("error", str(exc))]
    if rep.mail.sign_by == "relay":
        return _relay_signs(rep, submitter)
    if signing is None:
        return []  # no contact_info or no key: already reported as missing
    if signing.problem:
        return [Finding("error", f"DKIM: {signing.problem}")]
    keys = ", ".join(f"d={k.domain} s={k.selector}" for k in signing.aligned)
    ok = Finding("ok", f"DKIM: {keys} signs as the submitter {signing.submitter}")
    return [ok, *(Finding("warning", f"DKIM: {line}") for line in signing.warnings())]


def _relay_signs(rep: ReporterConfig, submitter: str) -> list[Finding]:
    whose = submitter or "the domain of reporter.contact_info"
    sender = rep.mail.from_addr or "reporter.mail.from"
    return [
        Finding("note", f"DKIM: the relay {rep.mail.relay} signs the reports "
                f'(reporter.mail.sign_by = "relay"): check-config cannot see its keys, nor '
                f"whether it signs as the submitter {whose} (RFC 8460 §5.3); read a report it "
                "signed with tlsrpt-reporter inspect"),
        Finding("warning", f"DKIM: a receiver may discard reports whose signing key lacks "
                f"s=tlsrpt (RFC 8460 §5.3): the relay's key for {whose} should carry it (a "
                f"selector of its own for mail from {sender}, so that the domain's other mail "
                "keeps its usual key)"),
    ]  # fmt: skip


def _submitter(rep: ReporterConfig) -> str:
    if not rep.contact_info:
        return ""
    return identity.submitter_domain("reporter.contact_info", rep.contact_info)


def _from_domain(rep: ReporterConfig) -> list[Finding]:
    """RFC 8460 §5.3 has the submitter sign, DMARC matches a signature to the From domain: one
    organisation's domain for both lets one signature serve both."""
    try:
        submitter = _submitter(rep)
    except ConfigError:
        return []  # reported by signers()
    if not submitter or not rep.mail.from_addr:
        return []
    from_domain = rep.mail.from_addr.rpartition("@")[2].lower()
    if organizational_domain(from_domain) == organizational_domain(submitter):
        return []
    relay = rep.mail.sign_by == "relay"
    consequence = (
        "the relay signs as the From domain, so no signature is the submitter's"
        if relay
        else "the submitter's signature is not DMARC-aligned with From, so the reports need a "
        f"second signature by {from_domain}"
    )
    return [
        Finding(
            "error" if relay else "warning",
            f"sending: reporter.mail.from {rep.mail.from_addr} is not in the domain of the "
            f"submitter {submitter} (reporter.contact_info): {consequence}; use an address "
            f"@{submitter}",
        )
    ]


def _password_file(rep: ReporterConfig) -> list[Finding]:
    path = rep.mail.relay_password_file
    if not path:
        return []
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return [Finding("error", f"sending: reporter.mail.relay_password_file {path} cannot be "
                        f"read: {os_fix(exc, path)}")]  # fmt: skip
    return [Finding("ok", f"sending: reporter.mail.relay_password_file {path} is readable")]


def _redirect(rep: ReporterConfig) -> list[Finding]:
    target = rep.redirect
    if not target:
        return []
    intro = f"sending: reporter.redirect = {target!r}: every report goes there instead of its rua"
    if target.startswith("mailto:"):
        return [Finding("note", f"{intro}, its Subject naming where it would have gone; remove "
                        "the key to start reporting")]  # fmt: skip
    directory = Path(target.removeprefix("dir:"))
    # The sender creates the directory when missing: its nearest existing parent must take it.
    existing = next(p for p in (directory, *directory.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        return [Finding("error", f"sending: reporter.redirect: {existing} is not a directory: "
                        "fix the path")]  # fmt: skip
    if not os.access(existing, os.W_OK | os.X_OK):
        return [Finding("error", f"sending: reporter.redirect: {existing} is not writable by "
                        "this user (the reporter's user must be able to write it)")]  # fmt: skip
    return [Finding("note", f"{intro} as .json.gz and .eml files; remove the key to start "
                    "reporting")]  # fmt: skip
