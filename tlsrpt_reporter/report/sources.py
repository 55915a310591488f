"""Reading a day's collected data from the reporter's sources (``reporter.sources``).

A source is a collector database path, ``cmd:`` and a command whose standard output is the
``export`` JSON lines of one day (for example ``cmd:ssh mta2 tlsrpt-reporter export --day {day}``:
several MTA hosts, one reporter), or the fleet's PostgreSQL, which the MTA hosts push to
(``postgresql://``, :mod:`.fleet_source`; a host that has not pushed the day counts as a failed
source). Commands run without a shell: the text is split like a shell would split it and
``{day}`` is replaced in each word afterwards, so nothing in the data can change what runs.
Lines come out in the ``export`` shape, plus the time each (domain, record) was last seen where
the source knows it, so the reporter can take the record seen last. Merging happens when a
report is built: equal policies add up across sources.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tlsrpt_reporter.config.source_syntax import command_words, is_command, is_postgresql
from tlsrpt_reporter.domain import normalize_domain
from tlsrpt_reporter.errors import ConfigError, StoreError
from tlsrpt_reporter.model import DETAIL_FIELDS, POLICY_TYPES, RESULT_TYPES
from tlsrpt_reporter.report import fleet_source
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire import canon

log = logging.getLogger("tlsrpt-reporter")

# A command source cannot list its days: these finished days are asked for (one empty
# answer costs one command run).
CMD_LOOKBACK_DAYS = 3
# Bounds on what a command may print: a broken or hostile host must not exhaust memory.
MAX_LINE = 16 * 1024 * 1024
MAX_OUTPUT = 1024 * 1024 * 1024
_STDERR_TAIL = 300


@dataclass
class DayData:
    """Everything the sources hold for one day."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    # (domain, record) -> last seen (Unix time)
    records: dict[tuple[str, str], float] = field(default_factory=dict)
    failed_sources: list[str] = field(default_factory=list)


class SourceError(StoreError):
    """One source could not deliver the day; the message names the source and why."""


def read_day(sources: Sequence[str], day: str, timeout: float = 300.0) -> DayData:
    """Read ``day`` from every source; a source that fails is listed, not fatal."""
    data = DayData()
    for source in sources:
        try:
            if is_command(source):
                lines, records = _run_command(source, day, timeout)
                for key in records:
                    # The export does not carry when a record was seen: such records count as
                    # seen at the start of the day, so a local database's newer sighting wins.
                    data.records.setdefault(key, 0.0)
                data.lines.extend(lines)
            elif is_postgresql(source):
                _read_fleet(source, day, timeout, data)
            else:
                _read_database(source, day, data)
        except SourceError as exc:
            data.failed_sources.append(str(exc))
    return data


def _read_fleet(source: str, day: str, timeout: float, data: DayData) -> None:
    try:
        fleet = fleet_source.read_day(source, day, timeout)
    except StoreError as exc:
        raise SourceError(f"{source}: {exc}") from None
    data.lines.extend(fleet.lines)
    for key, last in fleet.records.items():
        data.records[key] = max(last, data.records.get(key, last))
    # Each host the day lacks is a source that did not answer (the day waits for it).
    data.failed_sources.extend(fleet.missing)


def _canonical(lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same gate as at intake, for what was stored before it existed (a database the
    upgraded collector has not migrated yet) and for what other collectors send: every value
    in canonical form, so that equal policies merge. Line by line as they are read: a day's
    lines are never held twice (a large provider's day holds hundreds of megabytes)."""
    return [line for line in map(canon.export_line, lines) if line is not None]


def _read_database(source: str, day: str, data: DayData) -> None:
    try:
        conn = store.connect(source, create=False)
    except StoreError as exc:
        raise SourceError(f"{source}: {exc}") from None
    try:
        lines = _canonical(store.iter_day(conn, day))
        seen = store.records_last_seen(conn, day)
    except sqlite3.Error as exc:
        raise SourceError(f"{source}: {exc}") from None
    finally:
        conn.close()
    data.lines.extend(lines)
    for key, last in seen.items():
        data.records[key] = max(last, data.records.get(key, last))


def _run_command(
    source: str, day: str, timeout: float
) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """Run a ``cmd:`` source and check every line it prints; all or nothing: its lines in
    canonical form, and the (domain, record) of every line."""
    try:
        argv = command_words(source, day)
    except ConfigError as exc:
        raise SourceError(str(exc)) from None
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise SourceError(f"{source}: cannot run {argv[0]}: {exc.strerror}") from None
    out, err, why = _bounded_output(proc, timeout)
    if why:
        raise SourceError(f"{source}: {why}")
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        raise SourceError(f"{source}: exit status {proc.returncode}: {tail or 'no message'}")
    lines = []
    records = set()
    for number, raw in enumerate(out.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = check_line(raw, day)
        except ValueError as exc:
            raise SourceError(f"{source}: line {number}: {exc}") from None
        records.add((line["domain"], line["record"]))
        lines += _canonical((line,))
    return lines, records


def _bounded_output(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes, str]:
    """(stdout, the end of stderr, '' or why the command was killed): reads both pipes as
    they fill, and kills the command past ``timeout`` or :data:`MAX_OUTPUT` bytes."""
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    sizes = dict.fromkeys(chunks, 0)
    deadline = time.monotonic() + timeout
    why = ""
    with selectors.DefaultSelector() as sel:
        for pipe in (proc.stdout, proc.stderr):
            sel.register(pipe, selectors.EVENT_READ)
        while sel.get_map() and not why:
            left = deadline - time.monotonic()
            if left <= 0:
                why = f"no complete answer within {timeout:g} s (killed)"
                break
            for key, _ in sel.select(left):
                fd = key.fd
                data = os.read(fd, 1 << 20)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                if fd == err_fd:
                    # keep only the end of stderr: it is for the error message
                    chunks[fd] = [(b"".join(chunks[fd]) + data)[-4096:]]
                    continue
                chunks[fd].append(data)
                sizes[fd] += len(data)
                if sizes[fd] > MAX_OUTPUT:
                    why = f"more than {MAX_OUTPUT} bytes of output (killed)"
    if why:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    out = b"".join(chunks[out_fd]) if not why else b""
    return out, b"".join(chunks[err_fd]), why


def check_line(raw: bytes, day: str) -> dict[str, Any]:
    """One ``export`` line, checked field by field; ValueError says what is wrong.

    The data comes from another host: every field the report builder relies on is checked,
    and the domain is normalised again.
    """
    if len(raw) > MAX_LINE:
        raise ValueError(f"longer than {MAX_LINE} bytes")
    try:
        line = json.loads(raw)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(line, dict):
        raise ValueError("not a JSON object")
    if line.get("day") != day:
        raise ValueError(f"day {line.get('day')!r} is not the day asked for ({day})")
    domain, record = line.get("domain"), line.get("record", "")
    if not isinstance(domain, str) or not isinstance(record, str):
        raise ValueError("domain and record must be strings")
    line["domain"] = normalize_domain(domain)
    line["record"] = record
    _check_policy(line.get("policy"))
    summary = line.get("summary")
    if not isinstance(summary, dict) or not all(
        _count(summary.get(k))
        for k in ("total-successful-session-count", "total-failure-session-count")
    ):
        raise ValueError("summary must hold two session counts >= 0")
    details = line.setdefault("failure-details", [])
    if not isinstance(details, list):
        raise ValueError("failure-details must be a list")
    for detail in details:
        _check_detail(detail)
    return line


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_policy(policy: Any) -> None:
    if not isinstance(policy, dict):
        raise ValueError("policy must be an object")
    if policy.get("policy-type") not in POLICY_TYPES:
        raise ValueError(f"unknown policy-type {policy.get('policy-type')!r}")
    if not isinstance(policy.get("policy-domain"), str) or not policy["policy-domain"]:
        raise ValueError("policy-domain must be a non-empty string")
    for key in ("policy-string", "mx-host"):
        if key in policy and not _strings(policy[key]):
            raise ValueError(f"{key} must be a list of strings")


def _check_detail(detail: Any) -> None:
    if not isinstance(detail, dict):
        raise ValueError("a failure detail must be an object")
    if detail.get("result-type") not in RESULT_TYPES:
        raise ValueError(f"unknown result-type {detail.get('result-type')!r}")
    if not _count(detail.get("failed-session-count")):
        raise ValueError("failed-session-count must be a count >= 0")
    for name in DETAIL_FIELDS:
        if name in detail and not isinstance(detail[name], str):
            raise ValueError(f"{name} must be a string")


def days_with_data(sources: Sequence[str], now: float | None = None) -> list[str]:
    """Every day a source may hold, sorted: the days a database has counters for or some host
    pushed to the fleet's, and for command sources the last :data:`CMD_LOOKBACK_DAYS`
    finished UTC days."""
    days: set[str] = set()
    if any(is_command(source) for source in sources):
        today = int((time.time() if now is None else now) // 86400)
        days.update(
            time.strftime("%Y-%m-%d", time.gmtime((today - back) * 86400))
            for back in range(1, CMD_LOOKBACK_DAYS + 1)
        )
    for source in sources:
        if is_command(source):
            continue
        if is_postgresql(source):
            try:
                days.update(fleet_source.days(source))
            except StoreError as exc:
                log.warning("cannot list the days of %s: %s", source, exc)
            continue
        try:
            conn = store.connect(source, create=False)
        except StoreError:
            continue
        try:
            days.update(store.days(conn))
        except sqlite3.Error:
            pass
        finally:
            conn.close()
    return sorted(days)
