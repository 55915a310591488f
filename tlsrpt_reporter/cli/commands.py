"""The reporter's commands: ``build``, ``send``, ``run``, ``status``, ``check-config``.

Each turns configuration into the objects of ``schedule`` / ``sending`` and reports the outcome
in the operator's terms; exit codes as in docs/operating.md. ``check-config`` prints what
``config.check`` finds: the findings themselves belong there, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import email.utils
import errno
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

from tlsrpt_reporter import logs, safefile, utc
from tlsrpt_reporter.cli import run_loop, status_metrics, status_view, summary_cmd, suppressed_cmd
from tlsrpt_reporter.config import check as config_check
from tlsrpt_reporter.config import identity
from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.config.schema import DnsSettings, HttpsSettings, ReporterConfig
from tlsrpt_reporter.deliver import bulk_sign, dkim, plan
from tlsrpt_reporter.deliver.record import RecordError, parse_record
from tlsrpt_reporter.deliver.resolver import Resolver
from tlsrpt_reporter.deliver.sender import Sender
from tlsrpt_reporter.errors import ConfigError, TlsRptError, os_fix
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import instance as instance_store
from tlsrpt_reporter.store import report_status, set_aside, state_db
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store.process_lock import ProcessLock
from tlsrpt_reporter.store.state_db import StateDb

log = logging.getLogger("tlsrpt-reporter")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def load(path: str | None, db: str | None = None) -> ReporterConfig:
    """The reporter configuration; ``db`` replaces the sources with one collector database."""
    cfg = load_config(path).reporter
    if db is not None:
        cfg = dataclasses.replace(cfg, sources=(db,))
    return cfg


def _need_identity(cfg: ReporterConfig) -> None:
    missing = [m for m in cfg.missing_identity() if m.startswith("reporter.") and "mail" not in m]
    if missing:
        raise ConfigError(f"cannot build reports without {', '.join(missing)}")


def _dkim_keys(cfg: ReporterConfig) -> list[dkim.DkimKey]:
    return [dkim.DkimKey(k.domain, k.selector, Path(k.key), k.record) for k in cfg.mail.dkim]


def _keys(cfg: ReporterConfig) -> list[dkim.LoadedKey]:
    return [dkim.load_key(k) for k in _dkim_keys(cfg)]


def _write(path: Path, data: bytes | None) -> None:
    """Write one new file of ``build --out`` (``None``: create the directory itself).

    Nothing found there is overwritten or followed: ``--out /tmp/r`` names a place anyone could
    have planted a link at first. A failure is one on this host (exit 1), told in one line."""
    try:
        if data is None:
            safefile.make_directory(path)
        else:
            safefile.create(path, data)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            link = path if data is None else path.parent
            raise TlsRptError(f"build --out: {link} is a symbolic link: refusing to write "
                              "through it; give the directory it points to") from None  # fmt: skip
        if exc.errno == errno.EEXIST and data is not None:
            raise TlsRptError(f"build --out: {path} already exists: refusing to overwrite or "
                              "follow it; give a new or empty directory") from None  # fmt: skip
        raise TlsRptError(f"build --out: cannot write {path}: {os_fix(exc, path)}") from None


def cmd_build(
    config_path: str | None, db: str | None, day: str, out: Path, force: bool = False
) -> int:
    """Dry run: write each report's .json.gz and signed .eml into ``out``; send nothing.

    A day that has not finished (its UTC end plus ``grace``) is refused unless ``force``: its
    report would miss the rest of the day (RFC 8460 §4.1)."""
    cfg = load(config_path, db)
    now = time.time()
    ready = timing.ready_at(day, cfg.grace)
    if now < ready and not force:
        raise ConfigError(
            f"{day} has not finished: it is ready to build at {utc.minute(ready)} (the end of "
            f"the UTC day plus reporter.grace, {cfg.grace:g} s), in {_duration(ready - now)}; "
            "--force builds it now from what was collected so far"
        )
    _need_identity(cfg)
    keys = _keys(cfg)
    own, whose = _dry_run_instance(cfg)
    data = sources.read_day(cfg.sources, day, cfg.source_timeout)
    for failure in data.failed_sources:
        print(f"warning: source unreadable: {failure}", file=sys.stderr)
    rows, result = schedule.build_reports(cfg, day, data, now, instance=own)
    _write(out, None)
    # Unsigned here; signed below all at once, on every core.
    sender = Sender(cfg, Resolver(DnsSettings()), HttpsSettings(), [])
    date = email.utils.format_datetime(dt.datetime.fromtimestamp(int(now), dt.UTC))
    mails: list[tuple[Path, bytes]] = []
    for row in rows:
        _write(out / row["filename"], row["gzip"])
        to = _mailto(row["record"])
        if to and cfg.mail.from_addr:
            # As the first attempt to this destination would write it (deliver.sender).
            msg_id = plan.destination_message_id(row["message_id"], f"mailto:{to}")
            stored = state.ReportRow(0, day, row["domain"], row["report_id"], msg_id, date,
                                     row["filename"], row["gzip"], row["summary"],
                                     row["record"], 0.0, "pending", 0, None)  # fmt: skip
            eml = out / row["filename"].replace(".json.gz", ".eml")
            mails.append((eml, sender.unsigned(stored, to)))
    signed = bulk_sign.sign_all([m for _, m in mails], _dkim_keys(cfg))
    for (eml, _), message in zip(mails, signed, strict=True):
        _write(eml, message)
    emls = len(mails)
    print(f"{day}: {result.reports} reports written to {out} ({emls} with an .eml)")
    print(f"  Report-IDs carry the instance id {own} ({whose})")
    if result.host_reports:
        print(f"  {result.host_reports} of them for MX hosts (their record is looked up when "
              "sending, so they have no .eml here)")  # fmt: skip
    if result.skipped:
        print(f"  never reported to: {', '.join(result.skipped)}")
    if not keys:
        print("  note: no [[reporter.mail.dkim]] key configured, the .eml files are unsigned")
    return EXIT_OK


def _dry_run_instance(cfg: ReporterConfig) -> tuple[str, str]:
    """The instance id a dry run builds with, and where it comes from: the one ``send`` would
    use when there is one (reporter.instance_id, else the state database's), else a fresh one.
    The state database is only read, never created."""
    if cfg.instance_id:
        return cfg.instance_id, "reporter.instance_id"
    stored = instance_store.stored_instance_id(cfg.db)
    if stored:
        return stored, f"kept in {cfg.db}"
    return schedule.new_instance_id(), "random, for this dry run only: no state database yet"


def _duration(seconds: float) -> str:
    minutes = max(1, int(seconds + 59) // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _mailto(record: str) -> str:
    if not record:
        return ""
    with contextlib.suppress(RecordError):
        for uri in parse_record(record).uris:
            if uri.scheme == "mailto":
                return uri.value
    return ""


def _sender(cfg: ReporterConfig, dns: DnsSettings) -> Sender:
    missing = cfg.missing_identity()
    if missing:
        raise ConfigError(f"refusing to send: set {', '.join(missing)} (see check-config)")
    # RFC 8460 §5.3: the submitter signs the report mails; None: no key, refused just above.
    signing = identity.signers(cfg)
    if signing is not None and signing.problem:
        raise ConfigError(f"refusing to send: {signing.problem}")
    for warning in signing.warnings() if signing is not None else []:
        log.warning("DKIM: %s", warning)
    return Sender(cfg, Resolver(dns), cfg.https, _keys(cfg))


async def _self_check(sender: Sender, cfg: ReporterConfig) -> None:
    """Sign a sample with each key and verify it against the published record (strict tlsrpt
    mode); a key that does not match its record stops mail delivery. The keys are judged as a
    set (``dkim.settled``): the usual key beside an s=tlsrpt one is no cause for a warning."""
    checks = []
    for key, conf in zip(sender.keys, cfg.mail.dkim, strict=True):
        record = conf.record or await sender.resolver.txt(
            f"{conf.selector}._domainkey.{conf.domain}"
        )
        checks.append(dkim.check_key(key, record))
    for check, conf in zip(dkim.settled(checks), cfg.mail.dkim, strict=True):
        if check.level == "error":
            log.error("DKIM key %s._domainkey.%s: %s; mail delivery is stopped",
                      conf.selector, conf.domain, check.message)  # fmt: skip
            sender.mail_enabled = False
        elif check.level == "warning":
            log.warning("DKIM key %s._domainkey.%s: %s", conf.selector, conf.domain, check.message)


def _one_reporter(db: str) -> contextlib.AbstractContextManager[object]:
    """One reporter process per SQLite state database (its lock file); a PostgreSQL one is
    shared by any number of reporters, which claim each piece of work (store.leases)."""
    return contextlib.nullcontext() if state_db.is_postgresql(db) else ProcessLock(db)


def _reporter(config_path: str | None) -> tuple[ReporterConfig, Sender]:
    """The checked configuration and a sender ready to deliver (ConfigError otherwise)."""
    cfg = load_config(config_path)
    return cfg.reporter, _sender(cfg.reporter, cfg.dns)


def cmd_send(config_path: str | None, now: bool) -> int:
    """Build finished days, deliver what is due (everything pending with ``now``), exit."""
    logs.setup("tlsrpt-reporter", "info")
    cfg, sender = _reporter(config_path)
    with _one_reporter(cfg.db), logs.collapsed():  # one line, with a count, per fault
        conn = state.connect(cfg.db)
        try:
            schedule.build_due(cfg, conn, time.time(), random.Random())
            asyncio.run(_self_check(sender, cfg))
            summary = asyncio.run(sender.send_due(conn, force=now))
            waiting = set_aside.listed(conn)
        finally:
            conn.close()
    shared = f"; {summary.taken} left to another reporter" if summary.taken else ""
    print(
        f"resolved {summary.resolved} reports; attempted {summary.attempted} deliveries: "
        f"{summary.sent} sent, {summary.retrying} to retry, {summary.given_up} given up{shared}"
    )
    print(status_view.next_report_line(cfg, time.time()))
    for problem in summary.problems:
        print(f"tlsrpt-reporter: error: {problem}", file=sys.stderr)
    if waiting:
        print(f"tlsrpt-reporter: error: {_set_aside_line(waiting)}", file=sys.stderr)
    page_problem = summary_cmd.after_send(cfg)  # reporter.summary_html
    if page_problem:
        print(f"tlsrpt-reporter: error: {page_problem}", file=sys.stderr)
    return EXIT_FAILURE if summary.problems or waiting or page_problem else EXIT_OK


def _set_aside_line(waiting: list[set_aside.SetAside]) -> str:
    shown = "; ".join(f"{e.domain} on {e.day}: {e.reason}" for e in waiting[:5])
    more = f" (and {len(waiting) - 5} more)" if len(waiting) > 5 else ""
    return (
        f"{len(waiting)} reports set aside because they cannot be built: {shown}{more}; the "
        "other reports go out as usual. `tlsrpt-reporter retry-failed --all` builds them again"
    )


def cmd_retry_failed(config_path: str | None, day: str | None) -> int:
    """Build again the reports set aside (of ``day``, or all with ``day`` None)."""
    logs.setup("tlsrpt-reporter", "info")
    cfg = load(config_path)
    with _one_reporter(cfg.db):
        conn = state.connect(cfg.db)
        try:
            built, failed = schedule.retry_set_aside(cfg, conn, time.time(), day=day)
            waiting = set_aside.listed(conn, day)
        finally:
            conn.close()
    print(f"built {built} reports set aside; {failed} still cannot be built")
    if waiting:
        print(f"tlsrpt-reporter: error: {_set_aside_line(waiting)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_run(config_path: str | None) -> int:
    """The long-running reporter: build after each UTC day, send on schedule, until SIGTERM."""
    cfg, sender = _reporter(config_path)
    with _one_reporter(cfg.db):
        conn = state.connect(cfg.db)
        try:
            return asyncio.run(run_loop.run(cfg, sender, conn, _self_check))
        finally:
            conn.close()


def cmd_status(
    config_path: str | None, day: str | None, as_json: bool = False, fmt: str = "text"
) -> int:
    """Days, reports and deliveries from the state database; ``fmt`` is text, json or
    prometheus (``as_json`` is the older spelling of json)."""
    cfg = load_config(config_path).reporter
    conn = status_view.open_state(cfg.db)  # before the first build: zeros, exit 0
    try:
        if fmt == "prometheus":
            print(status_metrics.text(cfg, conn, time.time(), day), end="")
            return EXIT_OK
        rows = status_rows(conn, day)
        dead = suppressed_cmd.listed(conn)
        after = status_view.status_lines(cfg, conn)
    finally:
        conn.close()
    if as_json or fmt == "json":
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print(f"{'day':10}  {'reports':>7}  {'delivered':>9}  {'sending':>7}  {'pending':>7}  "
          f"{'given-up':>8}  {'no-dest':>7}")  # fmt: skip
    for r in rows:
        c = r["reports"]
        print(f"{r['day']:10}  {r['total']:7d}  {c.get('delivered', 0):9d}  "
              f"{c.get('sending', 0):7d}  {c.get('pending', 0):7d}  {c.get('given-up', 0):8d}  "
              f"{c.get('no-destination', 0):7d}")  # fmt: skip
        if r["note"]:
            print(f"    {r['note']}")
        for err in r["last_errors"]:
            print(f"    {err}")
        for entry in r["set_aside"]:
            print(f"    set aside, cannot be built: {entry['domain']}: {entry['reason']}")
        for entry in r["suppressed"]:
            print(f"    suppressed: {entry['destination']} ({entry['reports']} reports)")
    for line in [*suppressed_cmd.status_lines(dead), *after]:
        print(line)
    return EXIT_OK


def status_rows(conn: StateDb, day: str | None) -> list[dict[str, Any]]:
    """The status table as data (also the ``--json`` output)."""
    notes = report_status.built_days(conn)
    days = [d for d in notes if day is None or d == day]
    out = []
    for d in days:
        counts = report_status.report_counts(conn, d)
        deliveries = report_status.delivery_counts(conn, d)
        errors = [
            f"{domain} -> {destination}: {error}"
            for domain, destination, error in report_status.last_errors(conn, d)
        ]
        aside = [
            {"domain": e.domain, "reason": e.reason, "version": e.version, "retries": e.retries}
            for e in set_aside.listed(conn, d)
        ]
        out.append(
            {
                "day": d,
                "note": notes[d],
                "total": sum(counts.values()),
                "reports": counts,
                "deliveries": deliveries,
                "last_errors": errors,
                "set_aside": aside,
                # Deliveries held back from dead destinations (deliver.dead).
                "suppressed": suppressed_cmd.day_entries(conn, d),
            }
        )
    return out


def cmd_check_config(config_path: str | None) -> int:
    """Say, line by line, what is missing or wrong for collecting and for sending."""
    findings = config_check.check_config(config_path)
    for finding in findings:
        print(finding)
    return EXIT_USAGE if any(finding.problem for finding in findings) else EXIT_OK
