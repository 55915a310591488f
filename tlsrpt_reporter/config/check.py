"""What ``check-config`` says about a configuration on this host, finding by finding.

This module owns the verdicts of ``tlsrpt-reporter check-config`` (all of the file: the
collector's section as :mod:`.check_collect` sees it, sending as :mod:`.check_send` sees it,
and the DKIM keys: do they load, do they match their records, in the file or in DNS) and of
``tlsrpt-collectd --check-config`` (only what the collector uses: an MTA host of a fleet may
run nothing else). It returns findings, one line each, and lets the commands print them and
choose the exit code.

It must not print, change anything or run a ``cmd:`` source. Besides the shared core it
imports ``deliver`` (loading and checking keys, and the DKIM record lookups), only when asked
about sending: the collector never pays for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tlsrpt_reporter.config import check_collect, check_send
from tlsrpt_reporter.config.findings import Finding, Level
from tlsrpt_reporter.config.load import load, load_collectd, override_collectd
from tlsrpt_reporter.config.schema import CollectdConfig, Config, DkimConfig, DnsSettings
from tlsrpt_reporter.errors import ConfigError, TlsRptError

if TYPE_CHECKING:
    from tlsrpt_reporter.deliver import dkim

__all__ = [
    "Finding",
    "Level",
    "check_config",
    "collectd_config",
    "collectd_verdict",
    "collecting",
    "collector_check",
    "pushing",
    "sending",
]

collecting = check_collect.collecting


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
    return [read, *collecting(cfg.collectd), *sending(cfg, deferred), *pushing(cfg)]


def pushing(cfg: Config) -> list[Finding]:
    """What ``push`` would do on this host (docs/fleet.md); nothing when ``[push]`` is unset."""
    push = cfg.push
    if not push.database:
        return []
    host = push.host or "this machine's host name"
    return [Finding("ok", f"push: {cfg.collectd.db} as host {host} to {push.database}, today "
                    f"and {push.days} days back (not connected now)")]  # fmt: skip


def collector_check(path: str | None, **overrides: object) -> tuple[CollectdConfig, list[Finding]]:
    """``tlsrpt-collectd --check-config``: the ``[collectd]`` section the collector would run
    with (:func:`collectd_config`) and the findings about it; ConfigError when it cannot be
    read."""
    cd = collectd_config(path, **overrides)
    return cd, check_collect.collecting(cd)


def sending(cfg: Config, deferred: dict[str, ConfigError] | None = None) -> list[Finding]:
    """What stands between the reporter and sending: identity, sources, the [dns] and
    [reporter.https] tables (their errors as :func:`load` deferred them), the From address,
    the redirect, the DKIM keys and whether one signs as the submitter."""
    rep = cfg.reporter
    found = check_send.missing(rep)
    found += [check_send.source(source) for source in rep.sources]
    for name in ("dns", "reporter.https"):
        problem = (deferred or {}).get(name)
        if problem:
            found.append(Finding("error", str(problem)))
        else:
            found.append(Finding("ok", f"[{name}] settings"))
    found += check_send.mail_identity(rep)
    dns = None if "dns" in (deferred or {}) else cfg.dns
    return found + _dkim(rep.mail.dkim, rep.mail.from_addr, dns) + check_send.signers(rep)


def _dkim(keys: Sequence[DkimConfig], from_addr: str, dns: DnsSettings | None) -> list[Finding]:
    """One line per key: unreadable, or checked against its record (the file's ``record``, else
    DNS through ``dns``; None: [dns] is invalid, no lookup); then what the set lacks."""
    if not keys:
        return []
    # Imported here: tlsrpt-collectd imports this module for its [collectd] check, and the DKIM
    # stack (dkimpy, PyNaCl, dnspython) would add ~10 MB and a sixth of a second to every
    # collector start.
    from tlsrpt_reporter.deliver import dkim  # noqa: PLC0415

    found: list[Finding] = []
    loaded: list[tuple[DkimConfig, dkim.LoadedKey]] = []
    for conf in keys:
        try:
            loaded.append((conf, dkim.load_key(_key(conf))))
        except TlsRptError as exc:
            found.append(Finding("error", f"DKIM: {exc}"))
    records = _records([conf for conf, _ in loaded], dns)
    checks: list[dkim.KeyCheck] = []
    for conf, key in loaded:
        name = f"{conf.selector}._domainkey.{conf.domain}"
        record = records[name]
        if isinstance(record, Finding):
            found.append(record)
            continue
        checks.append(dkim.check_key(key, record))
    for check in dkim.settled(checks):
        found.append(Finding(check.level, f"DKIM {dkim.record_name(check.key)}: {check.message}"))
    # What the set lacks, judged only when every key could be checked: a key left out would
    # make a false alarm.
    if len(checks) == len(keys) and from_addr:
        found += [
            Finding("warning", f"DKIM: {problem}")
            for problem in dkim.coverage_problems(checks, from_addr)
        ]
    return found


def _key(conf: DkimConfig) -> dkim.DkimKey:
    from tlsrpt_reporter.deliver import dkim  # noqa: PLC0415

    return dkim.DkimKey(conf.domain, conf.selector, Path(conf.key), conf.record)


def _records(keys: Sequence[DkimConfig], dns: DnsSettings | None) -> dict[str, str | Finding]:
    """The record text of each key by its name: the file's ``record``, else what DNS answers
    ("" for none), else a finding saying why it could not be looked up."""
    from tlsrpt_reporter.deliver.resolver import Resolver  # noqa: PLC0415

    found: dict[str, str | Finding] = {}
    asked: list[str] = []
    for conf in keys:
        name = f"{conf.selector}._domainkey.{conf.domain}"
        if conf.record:
            found[name] = conf.record
        elif dns is None:
            found[name] = Finding("note", f"DKIM {name}: the key loads; its DNS record is not "
                                  "looked up while [dns] is invalid")  # fmt: skip
        else:
            asked.append(name)

    async def lookups(settings: DnsSettings) -> list[str | BaseException]:
        resolver = Resolver(settings)
        return await asyncio.gather(*(resolver.txt(n) for n in asked), return_exceptions=True)

    if asked and dns is not None:
        for name, answer in zip(asked, asyncio.run(lookups(dns)), strict=True):
            if isinstance(answer, TlsRptError):
                found[name] = Finding("warning", f"DKIM {name}: cannot look up its record "
                                      f"({answer}); it is checked again when the reporter "
                                      "starts")  # fmt: skip
            elif isinstance(answer, BaseException):
                raise answer
            else:
                found[name] = answer
    return found


def collectd_config(path: str | None, **overrides: object) -> CollectdConfig:
    """The ``[collectd]`` section ``tlsrpt-collectd`` runs with: the file's values (the other
    sections only need to be tables, see :func:`load_collectd`), then the command line's
    (None: not given), both checked alike; ConfigError when bad."""
    return override_collectd(load_collectd(path), **overrides)


def collectd_verdict(cd: CollectdConfig) -> str:
    """What ``tlsrpt-collectd --check-config`` says about a configuration that passed."""
    return f"configuration OK (socket {cd.socket}, database {cd.db})"
