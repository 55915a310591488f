"""Building finished days: read each day from the sources, build and check its reports, store
them with their send times.

A finished UTC day is built once (after ``grace``); each report gets its own send time inside
``spread`` (RFC 8460 §4.1). The arithmetic is :mod:`.timing`'s, the building of a day's
reports batch by batch :mod:`.day_build`'s; this module applies them to the sources and the
state database, storing each batch before the next is built.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Mapping
from typing import Any

from tlsrpt_reporter import __version__, utc
from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule.day_build import BuildResult, DayBuild
from tlsrpt_reporter.schedule.day_index import latest_records
from tlsrpt_reporter.schedule.timing import day_end, due_days, send_times
from tlsrpt_reporter.store import instance as instance_store
from tlsrpt_reporter.store import leases, report_batches, set_aside
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store.state_db import StateDb

log = logging.getLogger("tlsrpt-reporter")

# Reports built, stored and let go together (several batches share a transaction: see
# store.report_batches). The memory a day's build holds is a batch's, not the day's (a
# provider's day has hundreds of thousands of reports).
BATCH_SIZE = 500


def choose_record(records: Mapping[tuple[str, str], float], domain: str) -> str:
    """The record the MTA saw last for ``domain`` ('' when it saw none). One look-up; a day's
    build indexes every domain's at once (:func:`.day_index.latest_records`)."""
    return latest_records({k: v for k, v in records.items() if k[0] == domain}).get(domain, "")


def new_instance_id() -> str:
    """A fresh random reporter instance id: 16 hex digits, never derived from the host name."""
    return secrets.token_hex(8)


def instance_for(cfg: ReporterConfig, conn: StateDb) -> str:
    """This reporter's instance id (RFC 8460 §4.4: Report-IDs unique across instances):
    ``reporter.instance_id`` when set, else the random one kept in the state database (made
    on first use)."""
    return cfg.instance_id or instance_store.instance_id(conn, new_instance_id)


# --- applying them -----------------------------------------------------------------------


def build_reports(
    cfg: ReporterConfig,
    day: str,
    data: sources.DayData,
    now: float,
    only: set[str] | None = None,
    *,
    instance: str,
) -> tuple[list[dict[str, Any]], BuildResult]:
    """Build, validate and describe every report of ``day`` (no state written): one per
    recipient domain, and with ``cfg.mx_host_reports`` one per MX host named by a DANE policy
    (merged into that host's own report when it is a recipient domain too); with ``only``,
    just the reports of those domains. Each Report-ID carries ``instance`` (:func:`instance_for`).

    A report that cannot be built or fails the schema is set aside with its reason
    (``BuildResult.set_aside``): one bad input never stops the other reports of the day.
    Every report is held until the end: for a few domains (``retry-failed``, ``build --out``,
    the demo). ``build_due`` stores a day batch by batch instead.
    """
    build = DayBuild(cfg, day, data, now, instance=instance, only=only)
    rows = [row for batch in build.batches(BATCH_SIZE) for row in batch.rows]
    return rows, build.result


def build_due(
    cfg: ReporterConfig,
    conn: StateDb,
    now: float,
    rng: random.Random,
    *,
    batch_size: int = BATCH_SIZE,
) -> list[BuildResult]:
    """Build every finished day not built yet and store its reports with their send times,
    ``batch_size`` reports built at a time; retry once, by itself, what an older version of the
    program set aside."""
    retry_set_aside(cfg, conn, now, automatic=True)
    results = []
    own = instance_for(cfg, conn)
    days = sources.days_with_data(cfg.sources, now)
    for day in due_days(days, lambda d: state.is_built(conn, d), now, cfg.grace):
        # Reporters sharing a state database build each day once: the one holding the day's
        # lease builds it; a lease left by a reporter that died expires, and another finishes
        # the day (the batches already stored stay as they are).
        lease = f"build:{day}"
        if not leases.claim_named(conn, lease, leases.holder(), now):
            who = leases.named_holder(conn, lease, now) or "another reporter"
            log.info("%s is being built by %s", day, who)
            continue
        try:
            if state.is_built(conn, day):  # finished by another reporter meanwhile
                continue
            result = _build_day(
                cfg, conn, day, now, rng, instance=own, batch_size=batch_size, lease=lease
            )
        finally:
            leases.release_named(conn, lease, leases.holder())
        if result is not None:
            results.append(result)
    return results


def _build_day(
    cfg: ReporterConfig,
    conn: StateDb,
    day: str,
    now: float,
    rng: random.Random,
    *,
    instance: str,
    batch_size: int,
    lease: str = "",
) -> BuildResult | None:
    """Read, build and store one day (None: postponed); its data is let go on return. The
    day's ``lease`` is renewed while the build lasts."""
    data = sources.read_day(cfg.sources, day, cfg.source_timeout)
    note = ""
    if data.failed_sources:
        # A source that does not answer postpones the day, up to source_deadline; after
        # that the day is reported with what arrived, and the gap is logged.
        until = day_end(day) + cfg.grace + cfg.source_deadline
        if now < until:
            log.warning(
                "postponing %s until the sources answer (at most until %s): %s",
                day, utc.minute(until),
                "; ".join(data.failed_sources),
            )  # fmt: skip
            return None
        note = "built without: " + "; ".join(data.failed_sources)
        log.error("building %s although sources failed: %s", day, note)
    # What an unfinished earlier build of the day committed stays as it was (it may be on
    # its way already); only the other domains are built.
    done = report_batches.stored_domains(conn, day)
    build = DayBuild(cfg, day, data, now, instance=instance, skip=done)
    # One slot of the window per report to build (a report set aside leaves its slot empty):
    # the load stays flat without knowing in advance which reports will build.
    start = max(now, day_end(day) + cfg.grace)
    times = iter(send_times(len(build.domains), start, cfg.spread, rng))
    started = renewed = time.monotonic()
    with report_batches.day_writes(conn, day, now) as writer:
        for batch in build.batches(batch_size):
            for row in batch.rows:
                row["send_at"] = next(times)
            writer.store(
                batch.rows, [(domain, reason, __version__) for domain, reason in batch.set_aside]
            )
            if lease and time.monotonic() - renewed > leases.BUILD_LEASE / 4:
                renewed = time.monotonic()
                at = now + (renewed - started)
                if not leases.claim_named(conn, lease, leases.holder(), at):
                    # Too slow to renew: another reporter finishes the day from what is stored.
                    raise StoreError(f"another reporter took over building {day}")
        stored = writer.finish(note)
    result = build.result
    log.info(
        "built %d reports for %s (%d of them for MX hosts; %d domains never reported to; "
        "%d set aside)%s",
        result.reports, day, result.host_reports, len(result.skipped), len(result.set_aside),
        f"; {stored - result.reports} more stored by an earlier, unfinished build"
        if stored != result.reports else "",
    )  # fmt: skip
    return result


def retry_set_aside(
    cfg: ReporterConfig,
    conn: StateDb,
    now: float,
    *,
    day: str | None = None,
    automatic: bool = False,
) -> tuple[int, int]:
    """Build again the reports set aside (of ``day``, or of every day); returns how many now
    built and how many failed again.

    ``automatic`` retries only what an older program version set aside and was not retried yet:
    a new version may carry the fix, and it tries once by itself (``build_due`` does this on
    every pass). Without it, the operator asked (``retry-failed``), and everything is tried.
    """
    waiting = [
        entry
        for entry in set_aside.listed(conn, day)
        if not automatic or (entry.version != __version__ and entry.retries == 0)
    ]
    by_day: dict[str, set[str]] = {}
    for entry in waiting:
        by_day.setdefault(entry.day, set()).add(entry.domain)
    built = failed = 0
    for retry_day, domains in sorted(by_day.items()):
        data = sources.read_day(cfg.sources, retry_day, cfg.source_timeout)
        build = DayBuild(cfg, retry_day, data, now, instance=instance_for(cfg, conn), only=domains)
        tried: set[str] = set()
        for batch in build.batches(BATCH_SIZE):
            for row in batch.rows:
                row["send_at"] = now
                set_aside.resolve(conn, retry_day, row)
                log.info("report for %s on %s built on retry", row["domain"], retry_day)
                tried.add(row["domain"])
            for domain, reason in batch.set_aside:
                set_aside.failed_again(
                    conn, retry_day, domain, reason, version=__version__, now=now
                )
                tried.add(domain)
        built += build.result.reports
        failed += len(build.result.set_aside)
        for domain in (
            domains - tried
        ):  # no data left for it (retention, or the source was corrected)
            set_aside.failed_again(
                conn, retry_day, domain, "no data for this report any more",
                version=__version__, now=now,
            )  # fmt: skip
            failed += 1
    return built, failed
