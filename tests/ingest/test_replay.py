"""Session-log replay: ``ts`` decides the day, ``--into-db`` counts like the collector."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.collector import Collector
from support.datagrams import canon, ok
from support.pty_run import on_a_pty

from tlsrpt_reporter.demo import samplegen
from tlsrpt_reporter.demo.run import sample_path
from tlsrpt_reporter.errors import TlsRptError
from tlsrpt_reporter.ingest.replay import split_ts
from tlsrpt_reporter.store import collected as store


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def with_ts(raw: bytes, ts: str) -> bytes:
    return raw[:-1] + f',"ts": "{ts}"}}'.encode()


def test_ts_is_read_in_any_zone_and_cut_out_of_the_datagram() -> None:
    raw = ok("a.example")
    when, rest = split_ts(with_ts(raw, "2026-03-01T23:30:00-01:00"))
    assert when == 1_772_411_400.0  # 2026-03-02T00:30:00Z: the next UTC day
    assert rest == raw
    assert split_ts(raw) == (None, raw)
    with pytest.raises(TlsRptError, match="time zone"):
        split_ts(with_ts(raw, "2026-03-01T10:00:00"))
    with pytest.raises(TlsRptError, match="RFC 3339"):
        split_ts(with_ts(raw, "yesterday"))


def test_into_db_counts_each_session_on_the_utc_day_of_its_ts(tmp_path: Path) -> None:
    log = tmp_path / "sessions.jsonl"
    lines = [
        with_ts(ok("a.example"), "2026-03-01T23:59:59Z"),
        with_ts(ok("a.example"), "2026-03-02T00:00:00Z"),
        with_ts(ok("a.example"), "2026-03-01T23:30:00-01:00"),  # 00:30 UTC on the 2nd
        ok("now.example"),
        b"",
        b"not a datagram",
        with_ts(ok("bad.example"), "sometime"),
    ]
    log.write_bytes(b"\n".join(lines) + b"\n")
    db = tmp_path / "c.sqlite"
    result = cli("replay", str(log), "--into-db", str(db))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("4 sessions stored, 2 rejected, 1 blank lines skipped")
    conn = store.connect(db, create=False)
    first = list(store.iter_day(conn, "2026-03-01"))
    second = list(store.iter_day(conn, "2026-03-02"))
    today = list(store.iter_day(conn, time.strftime("%Y-%m-%d", time.gmtime())))
    counters = store.day_counters(conn, time.strftime("%Y-%m-%d", time.gmtime()))
    conn.close()
    assert [x["summary"]["total-successful-session-count"] for x in first] == [1]
    assert [x["summary"]["total-successful-session-count"] for x in second] == [2]
    assert [x["domain"] for x in today] == ["now.example"]
    assert counters["rejected:not-json"] == 2  # a bad ts leaves a line the decoder rejects


def test_into_db_matches_what_the_collector_stores_from_the_socket(
    make_collector: Callable[..., Collector], tmp_path: Path
) -> None:
    c = make_collector().start()
    sent = cli("replay", str(sample_path()), "--socket", str(c.socket), "--wait")
    assert sent.returncode == 0, sent.stderr
    assert c.stop() == 0
    db = tmp_path / "replayed.sqlite"
    assert cli("replay", str(sample_path()), "--into-db", str(db)).returncode == 0
    day = time.strftime("%Y-%m-%d", time.gmtime())
    conn = store.connect(db, create=False)
    replayed = list(store.iter_day(conn, day))
    conn.close()
    assert len(replayed) > 250
    assert canon(replayed) == canon(c.export(day))


def test_into_db_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    log = tmp_path / "big.jsonl"
    log.write_bytes(b"\n".join(samplegen.sessions(1, 50, 50_001)) + b"\n")
    status, shown = on_a_pty(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "replay", str(log),
         "--into-db", str(tmp_path / "a.sqlite")]
    )  # fmt: skip
    assert status == 0, shown
    assert f"replaying {log.name}" in shown
    assert re.search(r"[\d.]+ [kM]?B/s", shown), shown  # the rate, in bytes of the log
    assert "ETA" in shown
    piped = cli("replay", str(log), "--into-db", str(tmp_path / "b.sqlite"))
    assert piped.returncode == 0 and "replaying" not in piped.stderr
