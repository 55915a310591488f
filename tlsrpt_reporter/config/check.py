"""What ``check-config`` says about a configuration on this host, finding by finding.

This module owns the verdicts of ``tlsrpt-reporter check-config`` (is the file valid; do the
collector's directories exist and take writes; what is missing before anything may be sent;
can each source be found; do the DKIM keys load and match their records, and does one sign as
the submitter) and the ``[collectd]`` check of ``tlsrpt-collectd --check-config``. It returns
findings and lets the commands print them and choose the exit code.

It must not print, change anything, run a ``cmd:`` source or ask DNS: a key whose record is not
in the file is checked when the reporter starts. Besides the shared core it imports
``report.sources`` (source names) and, only when asked about sending, ``deliver.dkim``
(loading and checking keys).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tlsrpt_reporter.config import identity
from tlsrpt_reporter.config.load import load, load_collectd, override_collectd
from tlsrpt_reporter.config.schema import CollectdConfig, Config, ReporterConfig
from tlsrpt_reporter.config.source_syntax import command_words, is_command
from tlsrpt_reporter.errors import ConfigError, TlsRptError, os_fix

Level = Literal["ok", "warning", "missing", "error"]


@dataclass(frozen=True)
class Finding:
    """One line of check-config: ``missing`` and ``error`` are problems, the rest are not."""

    level: Level
    text: str

    @property
    def problem(self) -> bool:
        """Whether this finding makes check-config fail."""
        return self.level in ("error", "missing")

    def __str__(self) -> str:
        """The line check-config prints: the level in a column of eight, then the text."""
        return f"{self.level:8} {self.text}"


def check_config(path: str | None) -> list[Finding]:
    """Every finding about the configuration at ``path`` (None: the default path), in the
    order check-config prints them; a file that cannot be loaded is one ``error``."""
    # A bad [dns] or [reporter.https] table is one finding among the others, not the end.
    deferred: dict[str, ConfigError] = {}
    try:
        cfg = load(path, deferred=deferred)
    except ConfigError as exc:
        return [Finding("error", str(exc))]
    read = Finding("ok", f"configuration read from {cfg.source or 'defaults (no file)'}")
    return [read, *collecting(cfg.collectd), *sending(cfg, deferred)]


def collecting(cd: CollectdConfig) -> list[Finding]:
    """Whether the directories the collector writes into exist and take writes."""
    places: tuple[tuple[str, Path], ...] = (
        ("socket directory", Path(cd.socket).parent),
        ("database directory", Path(cd.db).parent),
    )
    if cd.metrics_file:
        places += (("metrics_file directory", Path(cd.metrics_file).parent),)
    found: list[Finding] = []
    for what, path in places:
        try:
            is_dir = path.is_dir()
        except OSError as exc:  # a directory above it cannot be searched by this user
            found.append(Finding("error", f"collecting: {what} {path}: {os_fix(exc, path)}"))
            continue
        if not is_dir:
            found.append(Finding("error", f"collecting: {what} {path} does not exist: create it"))
        elif not os.access(path, os.W_OK | os.X_OK):
            text = (f"collecting: {what} {path} is not writable by this user (the collector's "
                    "user must be able to write it)")  # fmt: skip
            found.append(Finding("warning", text))
        else:
            found.append(Finding("ok", f"collecting: {what} {path} exists"))
    return found


def sending(cfg: Config, deferred: dict[str, ConfigError] | None = None) -> list[Finding]:
    """What stands between the reporter and sending: identity, sources, the [dns] and
    [reporter.https] tables (their errors as :func:`load` deferred them), the DKIM keys and
    whether one signs as the submitter."""
    rep = cfg.reporter
    found = [
        Finding("missing", f"sending: {item} is not set; reports are built but never sent")
        for item in rep.missing_identity()
    ]
    found += [_source(source) for source in rep.sources]
    for name in ("dns", "reporter.https"):
        problem = (deferred or {}).get(name)
        if problem:
            found.append(Finding("error", str(problem)))
        else:
            found.append(Finding("ok", f"[{name}] settings"))
    return found + _dkim(rep) + _signers(rep)


def _signers(rep: ReporterConfig) -> list[Finding]:
    """RFC 8460 §5.3: a key signs as the submitter (``send`` and ``run`` refuse otherwise)."""
    try:
        signing = identity.signers(rep)
    except ConfigError as exc:  # a contact_info built in code, not read from the file
        return [Finding("error", str(exc))]
    if signing is None:
        return []  # no contact_info or no key: already reported as missing
    if signing.problem:
        return [Finding("error", f"DKIM: {signing.problem}")]
    keys = ", ".join(f"d={k.domain} s={k.selector}" for k in signing.aligned)
    ok = Finding("ok", f"DKIM: {keys} signs as the submitter {signing.submitter}")
    return [ok, *(Finding("warning", f"DKIM: {line}") for line in signing.warnings())]


def _source(source: str) -> Finding:
    if is_command(source):
        program = command_words(source, "2000-01-01")[0]
        if shutil.which(program):
            return Finding("ok", f"source {source}: {program} found (not run now)")
        return Finding("error", f"source {source}: cannot find {program}: install it or use a "
                       "full path")  # fmt: skip
    try:
        exists = Path(source).exists()
    except OSError as exc:
        return Finding("error", f"source {source}: {os_fix(exc, source)}")
    if exists:
        return Finding("ok", f"source {source}")
    return Finding("warning", f"source {source} does not exist yet (the collector creates it)")


def _dkim(rep: ReporterConfig) -> list[Finding]:
    # Imported here: tlsrpt-collectd imports this module for its [collectd] check, and the DKIM
    # stack (dkimpy, PyNaCl) would add ~10 MB and a sixth of a second to every collector start.
    from tlsrpt_reporter.deliver import dkim  # noqa: PLC0415

    try:
        keys = [
            dkim.load_key(dkim.DkimKey(k.domain, k.selector, Path(k.key), k.record))
            for k in rep.mail.dkim
        ]
    except TlsRptError as exc:
        return [Finding("error", f"DKIM: {exc}")]
    found: list[Finding] = []
    checks = []
    for key, conf in zip(keys, rep.mail.dkim, strict=True):
        name = f"{conf.selector}._domainkey.{conf.domain}"
        if not conf.record:
            found.append(Finding("ok", f"DKIM key {name} loads; its DNS record is checked when "
                                 "the reporter starts"))  # fmt: skip
            continue
        check = dkim.check_key(key, conf.record)
        checks.append(check)
        found.append(Finding(check.level, f"DKIM {name}: {check.message}"))
    if checks and rep.mail.from_addr:
        found += [
            Finding("warning", f"DKIM: {problem}")
            for problem in dkim.coverage_problems(checks, rep.mail.from_addr)
        ]
    return found


def collectd_config(path: str | None, **overrides: object) -> CollectdConfig:
    """The ``[collectd]`` section ``tlsrpt-collectd`` runs with: the file's values (the other
    sections only need to be tables, see :func:`load_collectd`), then the command line's
    (None: not given), both checked alike; ConfigError when bad."""
    return override_collectd(load_collectd(path), **overrides)


def collectd_verdict(cd: CollectdConfig) -> str:
    """What ``tlsrpt-collectd --check-config`` says about a configuration that passed."""
    return f"configuration OK (socket {cd.socket}, database {cd.db})"
