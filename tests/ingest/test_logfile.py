"""ingest-log: Postfix and Exim log lines become sessions; files, stdin and --follow."""

from __future__ import annotations

import gzip
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsrpt_reporter.ingest.exim_log import EximAdapter
from tlsrpt_reporter.ingest.lines import MAX_LINE, Lines
from tlsrpt_reporter.ingest.log_session import LogSession
from tlsrpt_reporter.ingest.log_time import LineClock, YearGuess, zone
from tlsrpt_reporter.ingest.logfile import _Tail
from tlsrpt_reporter.ingest.postfix_log import PostfixAdapter
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import ingest_position as positions

DAY = "2026-11-30"
TS = "Nov 30 10:00:01"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", *args],
        capture_output=True, text=True, timeout=120, input=stdin,
    )  # fmt: skip


def smtp(pid: int, msg: str, ts: str = TS, program: str = "postfix/smtp") -> str:
    return f"{ts} mta1 {program}[{pid}]: {msg}"


def tls(pid: int, trust: str, mx: str, ip: str) -> str:
    return smtp(
        pid,
        f"{trust} TLS connection established to {mx}[{ip}]:25: TLSv1.3 with cipher "
        "TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519",
    )


def verify_failed(pid: int, mx: str, ip: str, why: str) -> str:
    return smtp(pid, f"server certificate verification failed for {mx}[{ip}]:25: {why}")


def to(pid: int, qid: str, rcpt: str, mx: str, ip: str, status: str, extra: str = "") -> str:
    return smtp(
        pid,
        f"{qid}: to=<{rcpt}>, relay={mx}[{ip}]:25,{extra} delay=0.2, delays=0.1/0/0.05/0.05, "
        f"dsn={'2.0.0' if status.startswith('sent') else '4.7.5'}, status={status}",
    )


def feed(adapter: PostfixAdapter | EximAdapter, lines: list[str]) -> list[LogSession]:
    clock = LineClock(zone("UTC"))
    out = []
    for line in lines:
        parsed = clock.parse(line)
        assert parsed is not None, line
        session = adapter.feed(*parsed)
        if session is not None:
            out.append(session)
    return out


def outcome(s: LogSession) -> tuple[str, str, str, str | None, str | None]:
    return (s.domain, s.policy_type, s.policy_domain, s.result_type, s.reason)


# ---- Postfix ---------------------------------------------------------------------------


def test_postfix_each_tls_outcome_maps_to_its_result_type() -> None:
    lines = [
        tls(1, "Verified", "mx.ok.test", "192.0.2.1"),
        to(1, "A1", "a@ok.test", "mx.ok.test", "192.0.2.1", "sent (250 2.0.0 Ok)"),
        tls(2, "Anonymous", "mx.anon.test", "192.0.2.2"),
        to(2, "A2", "a@anon.test", "mx.anon.test", "192.0.2.2", "sent (250 2.0.0 Ok)"),
        verify_failed(3, "mx.exp.test", "192.0.2.3", "num=10:certificate has expired"),
        tls(3, "Untrusted", "mx.exp.test", "192.0.2.3"),
        to(3, "A3", "a@exp.test", "mx.exp.test", "192.0.2.3",
           "deferred (Server certificate not verified)"),
        verify_failed(4, "mx.self.test", "192.0.2.4", "num=18:self-signed certificate"),
        tls(4, "Untrusted", "mx.self.test", "192.0.2.4"),
        to(4, "A4", "a@self.test", "mx.self.test", "192.0.2.4",
           "deferred (Server certificate not verified)"),
        verify_failed(5, "mx.name.test", "192.0.2.5", "num=62:hostname mismatch"),
        tls(5, "Untrusted", "mx.name.test", "192.0.2.5"),
        to(5, "A5", "a@name.test", "mx.name.test", "192.0.2.5",
           "deferred (Server certificate not verified)"),
        smtp(6, "CA certificate verification failed for mx.ca.test[192.0.2.6]:25: "
                "untrusted issuer /CN=Evil CA"),
        tls(6, "Untrusted", "mx.ca.test", "192.0.2.6"),
        to(6, "A6", "a@ca.test", "mx.ca.test", "192.0.2.6",
           "deferred (Server certificate not verified)"),
        to(7, "A7", "a@plain.test", "mx.plain.test", "192.0.2.7",
           "deferred (TLS is required, but was not offered by host mx.plain.test[192.0.2.7])"),
        to(8, "A8", "a@hs.test", "mx.hs.test", "192.0.2.8",
           "deferred (Cannot start TLS: handshake failure)"),
        # Level "may": a verification error is logged, the mail goes anyway: a success.
        verify_failed(9, "mx.may.test", "192.0.2.9", "num=18:self-signed certificate"),
        tls(9, "Untrusted", "mx.may.test", "192.0.2.9"),
        to(9, "A9", "a@may.test", "mx.may.test", "192.0.2.9", "sent (250 2.0.0 Ok)"),
        # Verification passed, the server greylisted: TLS itself succeeded.
        tls(10, "Trusted", "mx.grey.test", "192.0.2.10"),
        to(10, "A10", "a@grey.test", "mx.grey.test", "192.0.2.10",
           "deferred (host mx.grey.test[192.0.2.10] said: 450 4.2.0 greylisted)"),
    ]  # fmt: skip
    adapter = PostfixAdapter()
    got = sorted(outcome(s) for s in feed(adapter, lines))
    assert got == sorted([
        ("ok.test", "no-policy-found", "ok.test", None, None),
        ("anon.test", "no-policy-found", "anon.test", None, None),
        ("exp.test", "no-policy-found", "exp.test", "certificate-expired",
         "certificate_has_expired"),
        ("self.test", "no-policy-found", "self.test", "certificate-not-trusted",
         "self-signed_certificate"),
        ("name.test", "no-policy-found", "name.test", "certificate-host-mismatch",
         "hostname_mismatch"),
        ("ca.test", "no-policy-found", "ca.test", "certificate-not-trusted",
         "untrusted_issuer_/CN=Evil_CA"),
        ("plain.test", "no-policy-found", "plain.test", "starttls-not-supported",
         "starttls-not-offered"),
        ("hs.test", "no-policy-found", "hs.test", "validation-failure", "tls-handshake-failure"),
        ("may.test", "no-policy-found", "may.test", None, None),
        ("grey.test", "no-policy-found", "grey.test", None, None),
    ])  # fmt: skip
    failure = next(s for s in feed(PostfixAdapter(), lines[4:7]))
    assert (failure.mx_hostname, failure.receiving_ip) == ("mx.exp.test", "192.0.2.3")


def test_postfix_counts_one_session_per_connection_and_domain() -> None:
    lines = [
        tls(1, "Verified", "mx.ok.test", "192.0.2.1"),
        to(1, "B1", "a@ok.test", "mx.ok.test", "192.0.2.1", "sent (250 Ok)"),
        to(1, "B1", "b@ok.test", "mx.ok.test", "192.0.2.1", "sent (250 Ok)"),
        to(1, "B1", "c@other.test", "mx.ok.test", "192.0.2.1", "sent (250 Ok)"),
        # the next message over the cached connection: no new handshake, nothing counted
        to(1, "B2", "d@ok.test", "mx.ok.test", "192.0.2.1", "sent (250 Ok)", " conn_use=2,"),
        # a new connection of the same process counts again
        tls(1, "Verified", "mx.ok.test", "192.0.2.1"),
        to(1, "B3", "e@ok.test", "mx.ok.test", "192.0.2.1", "sent (250 Ok)"),
        # several recipients refused for want of STARTTLS: one session
        to(2, "B4", "a@plain.test", "mx.plain.test", "192.0.2.7",
           "deferred (TLS is required, but was not offered by host mx.plain.test[192.0.2.7])"),
        to(2, "B4", "b@plain.test", "mx.plain.test", "192.0.2.7",
           "deferred (TLS is required, but was not offered by host mx.plain.test[192.0.2.7])"),
        # the next message to it is another connection
        to(2, "B5", "c@plain.test", "mx.plain.test", "192.0.2.7",
           "deferred (TLS is required, but was not offered by host mx.plain.test[192.0.2.7])"),
    ]  # fmt: skip
    adapter = PostfixAdapter()
    domains = [s.domain for s in feed(adapter, lines)]
    assert domains == ["ok.test", "other.test", "ok.test", "plain.test", "plain.test"]
    assert adapter.counts["reused-connection"] == 1
    assert adapter.counts["same-connection"] == 2


def test_postfix_lines_without_a_tls_outcome_are_counted_and_skipped() -> None:
    lines = [
        # plain delivery, TLS never attempted (or smtp_tls_loglevel = 0)
        to(1, "C1", "a@plain.test", "mx.plain.test", "192.0.2.1", "sent (250 Ok)"),
        smtp(2, "C2: to=<a@x.test>, relay=none, delay=30, delays=0/0/30/0, dsn=4.4.1, "
                "status=deferred (connect to mx.x.test[192.0.2.2]:25: Connection timed out)"),
        tls(3, "Verified", "lmtp.local", "127.0.0.1").replace("postfix/smtp", "postfix/lmtp"),
        smtp(4, "C3: message-id=<x@y>", program="postfix/cleanup"),
        f"{TS} mta1 dovecot[5]: imap-login: Login",
        tls(6, "Verified", "mx.ok.test", "192.0.2.6"),
        smtp(6, "C6: to=<nobody>, relay=mx.ok.test[192.0.2.6]:25, delay=1, dsn=2.0.0, "
                "status=sent (250 Ok)"),
    ]  # fmt: skip
    adapter = PostfixAdapter()
    assert feed(adapter, lines) == []
    assert adapter.counts["no-tls-outcome"] == 1
    assert adapter.counts["no-connection"] == 1
    assert adapter.counts["lmtp"] == 1
    assert adapter.counts["not-postfix"] == 1
    assert adapter.counts["bad-recipient-domain"] == 1


def test_postfix_dane_outcomes_belong_to_a_tlsa_policy_of_the_mx_host() -> None:
    lines = [
        smtp(1, "mx.dane.test[192.0.2.1]:25: Matched DANE EE certificate at depth 0: 3 1 1 AB"),
        tls(1, "Verified", "mx.dane.test", "192.0.2.1"),
        to(1, "D1", "a@dane.test", "mx.dane.test", "192.0.2.1", "sent (250 Ok)"),
        verify_failed(2, "mx.bad.test", "192.0.2.2", "num=65:No matching DANE TLSA records"),
        tls(2, "Untrusted", "mx.bad.test", "192.0.2.2"),
        to(2, "D2", "a@bad.test", "mx.bad.test", "192.0.2.2",
           "deferred (Server certificate not verified)"),
        to(3, "D3", "a@lookup.test", "mx.lookup.test", "192.0.2.3",
           "deferred (TLSA lookup error for mx.lookup.test:25)"),
    ]  # fmt: skip
    got = [outcome(s) for s in feed(PostfixAdapter(), lines)]
    assert got == [
        ("dane.test", "tlsa", "mx.dane.test", None, None),
        ("bad.test", "tlsa", "mx.bad.test", "tlsa-invalid", "No_matching_DANE_TLSA_records"),
        ("lookup.test", "tlsa", "mx.lookup.test", "tlsa-invalid",
         "TLSA_lookup_error_for_mx.lookup.test:25"),
    ]  # fmt: skip


def test_postfix_state_survives_a_snapshot_between_the_tls_line_and_the_delivery() -> None:
    first = PostfixAdapter()
    lines = [verify_failed(7, "mx.e.test", "192.0.2.9", "certificate has expired")]
    assert feed(first, lines) == []
    second = PostfixAdapter()
    second.restore(first.snapshot())
    got = feed(second, [
        tls(7, "Untrusted", "mx.e.test", "192.0.2.9"),
        to(7, "E1", "a@e.test", "mx.e.test", "192.0.2.9",
           "deferred (Server certificate not verified)"),
    ])  # fmt: skip
    assert [s.result_type for s in got] == ["certificate-expired"]


# ---- Exim ------------------------------------------------------------------------------

EXIM_TS = "2026-11-30 10:00:01"


def exim(text: str) -> str:
    return f"{EXIM_TS} {text}"


def test_exim_deliveries_and_tls_failures_map_to_result_types() -> None:
    cipher = "X=TLS1.3:TLS_AES_256_GCM_SHA384:256"
    lines = [
        exim(f"1rAAAA-000001-Ab => a@ok.test R=dnslookup T=remote_smtp H=mx.ok.test "
             f"[192.0.2.1] {cipher} CV=yes DN=\"CN=mx.ok.test\" C=\"250 OK id=1\""),
        exim(f"1rAAAA-000001-Ab -> b@ok.test R=dnslookup T=remote_smtp H=mx.ok.test "
             f"[192.0.2.1] {cipher} CV=yes C=\"250 OK id=1\""),
        exim(f"1rAAAB-000001-Ab => a@dane.test R=dnslookup T=remote_smtp H=mx.dane.test "
             f"[192.0.2.2] {cipher} CV=dane C=\"250 OK\""),
        exim("[192.0.2.3] SSL verify error: depth=0 error=certificate has expired "
             "cert=/CN=mx.exp.test"),
        exim("1rAAAC-000001-Ab == a@exp.test R=dnslookup T=remote_smtp defer (-37) "
             "H=mx.exp.test [192.0.2.3]: TLS session: (SSL_connect): error:0A000086:SSL "
             "routines::certificate verify failed"),
        exim("1rAAAD-000001-Ab [192.0.2.4] SSL verify error: certificate name mismatch: "
             "DN=\"/CN=other.test\" H=\"mx.name.test\""),
        exim("1rAAAD-000001-Ab == a@name.test R=dnslookup T=remote_smtp defer (-37) "
             "H=mx.name.test [192.0.2.4]: TLS session: (SSL_connect): certificate verify failed"),
        exim("1rAAAE-000001-Ab == a@plain.test R=dnslookup T=remote_smtp defer (-38) "
             "H=mx.plain.test [192.0.2.5]: a TLS session is required, but the server did not "
             "offer TLS support"),
        # TLS failed without hosts_require_tls: Exim fell back to clear text and delivered.
        exim("TLS error on connection to mx.fb.test [192.0.2.6] (SSL_connect): error:0A000086:"
             "SSL routines::certificate verify failed"),
        exim("1rAAAF-000001-Ab => a@fb.test R=dnslookup T=remote_smtp H=mx.fb.test "
             "[192.0.2.6] C=\"250 OK\""),
        # plain delivery, TLS never tried: no outcome
        exim("1rAAAG-000001-Ab => a@clear.test R=dnslookup T=remote_smtp H=mx.clear.test "
             "[192.0.2.7] C=\"250 OK\""),
        # down a continued connection: counted when it was opened
        exim(f"1rAAAH-000001-Ab => c@ok.test R=dnslookup T=remote_smtp H=mx.ok.test "
             f"[192.0.2.1]* {cipher} CV=yes C=\"250 OK\""),
        exim("1rAAAI-000001-Ab <= sender@here.test H=localhost [127.0.0.1] P=esmtp S=300"),
        exim("1rAAAI-000001-Ab == a@down.test R=dnslookup T=remote_smtp defer (111): "
             "Connection refused"),
    ]  # fmt: skip
    adapter = EximAdapter()
    got = [outcome(s) for s in feed(adapter, lines)]
    assert got == [
        ("ok.test", "no-policy-found", "ok.test", None, None),
        ("dane.test", "tlsa", "mx.dane.test", None, None),
        ("exp.test", "no-policy-found", "exp.test", "certificate-expired",
         "certificate_has_expired"),
        ("name.test", "no-policy-found", "name.test", "certificate-host-mismatch",
         "certificate_name_mismatch"),
        ("plain.test", "no-policy-found", "plain.test", "starttls-not-supported",
         "starttls-not-offered"),
        ("fb.test", "no-policy-found", "fb.test", "validation-failure",
         "(SSL_connect):_error:0A000086:SSL_routines::certificate_verify_failed"),
    ]  # fmt: skip
    assert adapter.counts["same-connection"] == 1
    assert adapter.counts["reused-connection"] == 1
    assert adapter.counts["no-tls-outcome"] == 1  # clear.test
    assert adapter.counts["no-connection"] == 1  # down.test


def test_exim_through_syslog_and_with_pid_and_zone() -> None:
    lines = [
        "Nov 30 10:00:01 mta2 exim[77]: 1rAAAA-000001-Ab => a@ok.test R=r T=t H=mx.ok.test "
        "[192.0.2.1] X=TLS1.2:ECDHE:256 CV=no",
        "2026-11-30 10:00:01.123 +0100 [4242] 1rAAAA-000000000Ab-CdEf => a@new.test R=r T=t "
        "H=mx.new.test [2001:db8::1]:25 X=TLS1.3:A:256 CV=yes",
    ]
    clock = LineClock(zone("UTC"))
    adapter = EximAdapter()
    got = []
    for line in lines:
        parsed = clock.parse(line)
        assert parsed is not None
        got.append(adapter.feed(*parsed))
    assert [s.domain if s else None for s in got] == ["ok.test", "new.test"]
    assert got[1] is not None and got[1].when == 1_796_029_201.123  # 09:00:01.123 UTC


# ---- timestamps ------------------------------------------------------------------------


def test_syslog_times_take_the_zone_and_a_year_that_is_not_in_the_future() -> None:
    berlin = LineClock(zone("Europe/Berlin"))
    parsed = berlin.parse("Jul  1 12:00:00 h postfix/smtp[1]: x")
    assert parsed is not None
    when, rest = parsed
    assert rest == "h postfix/smtp[1]: x"
    assert time.gmtime(when).tm_hour == 10  # CEST is UTC+2
    assert time.gmtime(when).tm_year <= time.gmtime().tm_year
    future = YearGuess()
    now = time.time()
    this_year = time.gmtime(now).tm_year
    tomorrow_next_month = time.gmtime(now + 40 * 86400)
    year = future.year_for(tomorrow_next_month.tm_mon, 1, zone("UTC"), now)
    expected = this_year - 1 if tomorrow_next_month.tm_year == this_year else this_year
    assert year == expected


def test_syslog_year_steps_forward_across_new_year() -> None:
    clock = LineClock(zone("UTC"), YearGuess(year=2026, month=12))
    times = []
    for line in ("Dec 31 23:59:59 h p[1]: a", "Jan  1 00:00:01 h p[1]: b"):
        parsed = clock.parse(line)
        assert parsed is not None
        times.append(parsed[0])
    assert [time.strftime("%Y-%m-%d", time.gmtime(t)) for t in times] == [
        "2026-12-31",
        "2027-01-01",
    ]


def test_iso_times_keep_their_offset_and_naive_ones_take_the_zone() -> None:
    clock = LineClock(zone("America/New_York"))
    cases = {
        "2026-11-30T10:00:01.5+01:00 h p[1]: x": 1_796_029_201.5,
        "2026-11-30T10:00:01+0100 h p[1]: x": 1_796_029_201.0,  # journalctl -o short-iso
        "2026-11-30T09:00:01Z h p[1]: x": 1_796_029_201.0,
        "2026-11-30 04:00:01 1rAAAA-000001-Ab => x": 1_796_029_201.0,  # Exim, local (EST)
    }
    for line, expected in cases.items():
        parsed = clock.parse(line)
        assert parsed is not None and parsed[0] == expected, line
    assert clock.parse("no time here") is None
    assert clock.parse("Foo 30 10:00:01 h p[1]: x") is None


def test_unknown_time_zone_is_a_usage_error(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("")
    r = cli("ingest-log", "--format", "postfix", str(log), "--db", str(tmp_path / "db"),
            "--timezone", "Mars/Olympus")  # fmt: skip
    assert r.returncode == 2  # a bad command-line value: usage (docs/operating.md)
    assert "unknown time zone 'Mars/Olympus'" in r.stderr


# ---- the command ------------------------------------------------------------------------


def sample_lines(prefix: str, n: int, start: int = 0) -> list[str]:
    """n successful connections, one per pid, each with its delivery line."""
    out = []
    for i in range(start, start + n):
        out.append(tls(1000 + i, "Verified", f"mx.{prefix}.test", "192.0.2.1"))
        out.append(to(1000 + i, f"Q{i}", f"u{i}@{prefix}.test", f"mx.{prefix}.test",
                      "192.0.2.1", "sent (250 Ok)"))  # fmt: skip
    return out


def schema_ready(db: Path) -> bool:
    """The writer has created ``db`` and committed its schema. The file appears (and can be
    read, at version 0) before that: a reader polling a starting ingest-log must wait."""
    if not db.exists():
        return False
    probe = sqlite3.connect(db)
    try:
        return int(probe.execute("PRAGMA user_version").fetchone()[0]) >= store.SCHEMA_VERSION
    finally:
        probe.close()


def stored(db: Path, day: str = DAY) -> dict[str, tuple[int, int]]:
    if not schema_ready(db):
        return {}
    conn = store.connect(db, create=False)
    try:
        return {
            x["domain"]: (
                x["summary"]["total-successful-session-count"],
                x["summary"]["total-failure-session-count"],
            )
            for x in store.iter_day(conn, day)
        }
    finally:
        conn.close()


def test_files_are_read_in_order_gz_included(tmp_path: Path) -> None:
    older = tmp_path / "mail.log.2.gz"
    with gzip.open(older, "wt") as fh:
        fh.write("\n".join(sample_lines("a", 3)) + "\n")
    newer = tmp_path / "mail.log"
    newer.write_text("\n".join(sample_lines("a", 2, start=3) + sample_lines("b", 1)) + "\n")
    db = tmp_path / "c.sqlite"
    r = cli("ingest-log", "--format", "postfix", "--timezone", "UTC", str(older), str(newer),
            "--db", str(db))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("12 lines read, 6 sessions stored; days: 2026-11-30")
    assert stored(db) == {"a.test": (5, 0), "b.test": (1, 0)}
    missing = cli("ingest-log", "--format", "postfix", str(tmp_path / "nope.log"),
                  "--db", str(db))  # fmt: skip
    assert missing.returncode == 1
    assert "cannot read log file" in missing.stderr and "nope.log" in missing.stderr


def test_follow_takes_exactly_one_file(tmp_path: Path) -> None:
    r = cli("ingest-log", "--format", "exim", "--follow", "a", "b", "--db", str(tmp_path / "d"))
    assert r.returncode == 2
    assert "--follow takes exactly one log file" in r.stderr


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value {value!r}")
        time.sleep(0.1)


class Follower:
    def __init__(self, log: Path, db: Path, *extra: str) -> None:
        # Its log goes to a file the test can read while it runs (not next to the log: a
        # name starting with mail.log would be a rotated copy to the follower).
        fd, name = tempfile.mkstemp(prefix="follower-", suffix=".stderr", dir=db.parent)
        self.stderr = Path(name)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tlsrpt_reporter.cli", "ingest-log", "--format",
                 "postfix", "--timezone", "UTC", "--follow", str(log), "--db", str(db), *extra],
                stdout=subprocess.PIPE, stderr=fd, text=True,
            )  # fmt: skip
        finally:
            os.close(fd)

    def logged(self, text: str) -> str:
        """The first line of its log that contains ``text``, once it has been written."""

        def line() -> str | None:
            err = self.stderr.read_text()
            found = next((x for x in err.splitlines() if text in x), None)
            assert found is not None or self.proc.poll() is None, f"follower exited: {err}"
            return found

        found: str = wait_for(line)
        return found

    def following_from(self) -> int:
        """The byte it started following at: it logs that once it has opened the file, its
        SIGTERM handler installed (a SIGTERM before then kills it, exit status -15)."""
        return int(self.logged(" from byte ").rsplit(" ", 1)[1])

    def stop(self) -> tuple[str, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        err = self.stderr.read_text()
        assert self.proc.returncode == 0, err
        return out, err


@pytest.fixture
def follower() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for f in started:
        if f.proc.poll() is None:
            f.proc.kill()
            f.proc.wait()


def append(path: Path, lines: list[str]) -> None:
    with path.open("a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def saved_offset(db: Path, log: Path) -> int | None:
    """Where the follower of ``log`` saved its position (with the counts of its last flush)."""
    if not schema_ready(db):
        return None
    conn = store.connect(db, create=False)
    try:
        saved = positions.load(conn, str(log))
    finally:
        conn.close()
    return None if saved is None else saved.offset


def test_follow_survives_rotation_truncation_and_restarts_counting_each_line_once(
    tmp_path: Path, follower: list[Follower]
) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    append(log, sample_lines("a", 5))
    f = Follower(log, db)
    follower.append(f)
    wait_for(lambda: stored(db).get("a.test") == (5, 0))
    # a half-written line is not read until it is complete
    complete_line = tls(2000, "Verified", "mx.b.test", "192.0.2.1") + "\n"
    end_of_complete = log.stat().st_size + len(complete_line.encode())
    with log.open("a") as fh:
        fh.write(complete_line + TS + " mta1 post")
    # read: the position is saved past the complete line, the half line is held
    wait_for(lambda: saved_offset(db, log) == end_of_complete)
    with log.open("a") as fh:
        fh.write("fix/smtp[2000]: Q9: to=<x@b.test>, relay=mx.b.test[192.0.2.1]:25, "
                 "delay=1, dsn=2.0.0, status=sent (250 Ok)\n")  # fmt: skip
    wait_for(lambda: stored(db).get("b.test") == (1, 0))
    # rename-and-create rotation while running: the tail of the old file, then the new one
    append(log, sample_lines("a", 2, start=10))
    log.rename(tmp_path / "mail.log.1")
    append(log, sample_lines("c", 3))
    wait_for(lambda: stored(db).get("c.test") == (3, 0))
    assert stored(db)["a.test"] == (7, 0)
    # copytruncate rotation
    os.truncate(log, 0)
    append(log, sample_lines("d", 1))
    wait_for(lambda: stored(db).get("d.test") == (1, 0))
    out, _ = f.stop()
    assert "sessions stored" in out
    # stopped: lines are written, the file is rotated, more lines are written
    append(log, sample_lines("e", 2))
    append(log, [tls(3000, "Verified", "mx.f.test", "192.0.2.1")])  # its delivery comes later
    log.rename(tmp_path / "mail.log.0")
    append(log, [to(3000, "Q3", "z@f.test", "mx.f.test", "192.0.2.1", "sent (250 Ok)")])
    append(log, sample_lines("g", 1))
    g = Follower(log, db)
    follower.append(g)
    wait_for(lambda: stored(db).get("g.test") == (1, 0))
    g.stop()
    # and once more with nothing new: nothing counted twice
    h = Follower(log, db)
    follower.append(h)
    assert h.following_from() == log.stat().st_size
    out, _ = h.stop()
    assert out.startswith("0 lines read, 0 sessions stored")
    assert stored(db) == {
        "a.test": (7, 0), "b.test": (1, 0), "c.test": (3, 0), "d.test": (1, 0),
        "e.test": (2, 0), "f.test": (1, 0), "g.test": (1, 0),
    }  # fmt: skip


def test_follow_from_end_skips_what_is_already_there(
    tmp_path: Path, follower: list[Follower]
) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    append(log, sample_lines("old", 3))
    f = Follower(log, db, "--from-end")
    follower.append(f)
    assert f.following_from() == log.stat().st_size
    append(log, sample_lines("new", 1))
    wait_for(lambda: stored(db).get("new.test") == (1, 0))
    f.stop()
    assert "old.test" not in stored(db)


def test_standard_input_is_stored_while_the_pipe_stays_open(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "ingest-log", "--format", "postfix",
         "--timezone", "UTC", "-", "--db", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdin is not None
        proc.stdin.write("\n".join(sample_lines("pipe", 4)) + "\n")
        proc.stdin.flush()
        wait_for(lambda: stored(db).get("pipe.test") == (4, 0))  # like journalctl -f: no EOF
        proc.stdin.write("\n".join(sample_lines("pipe", 1, start=9)) + "\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stored(db) == {"pipe.test": (5, 0)}


def test_exim_log_through_the_command(tmp_path: Path) -> None:
    log = tmp_path / "mainlog"
    log.write_text(
        exim("1rAAAE-000001-Ab == a@plain.test R=dnslookup T=remote_smtp defer (-38) "
             "H=mx.plain.test [192.0.2.5]: a TLS session is required, but the server did not "
             "offer TLS support") + "\n"
        + exim("1rAAAA-000001-Ab => a@ok.test R=dnslookup T=remote_smtp H=mx.ok.test "
               "[192.0.2.1] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes") + "\n"
    )  # fmt: skip
    db = tmp_path / "c.sqlite"
    r = cli("ingest-log", "--format", "exim", "--timezone", "UTC", str(log), "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert stored(db) == {"plain.test": (0, 1), "ok.test": (1, 0)}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=20))
def test_no_line_stops_an_adapter(lines: list[str]) -> None:
    clock = LineClock(zone("UTC"))
    adapters = (PostfixAdapter(), EximAdapter())
    for raw in lines:
        for text in (raw, f"{TS} h postfix/smtp[1]: {raw}", f"{EXIM_TS} 1rAAAA-000001-Ab {raw}"):
            parsed = clock.parse(text)
            if parsed is not None:
                for adapter in adapters:
                    session = adapter.feed(*parsed)
                    if session is not None:
                        session.datagram()


def test_an_endless_line_is_cut_once_and_never_held_whole(tmp_path: Path) -> None:
    lines = Lines()
    passed: list[bytes] = []
    for _ in range(40):  # 40 MiB without a newline
        passed += lines.feed(b"x" * (1 << 20))
        assert len(lines.pending) <= MAX_LINE
    assert len(passed) == 1 and MAX_LINE < len(passed[0]) <= MAX_LINE + (1 << 20)
    assert lines.feed(b"xxx\nnext line\npart") == [b"next line"]
    assert lines.end() == [b"part"]
    # through the command: one line-too-long, and the sessions around it still count
    log = tmp_path / "mail.log"
    with log.open("w") as fh:
        fh.write("\n".join(sample_lines("a", 1)) + "\n")
        fh.write(TS + " " + "y" * (3 << 20) + "\n")
        fh.write("\n".join(sample_lines("a", 1, start=1)) + "\n")
    db = tmp_path / "c.sqlite"
    r = cli("ingest-log", "--format", "postfix", "--timezone", "UTC", str(log), "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert "line-too-long 1" in r.stdout and stored(db) == {"a.test": (2, 0)}


def test_a_followed_file_is_read_to_its_end_past_an_endless_line(tmp_path: Path) -> None:
    # A rotated file is finished by reading until nothing is left: a chunk in the middle of
    # an over-long line completes no line, and must not pass for the end of the file.
    log = tmp_path / "mail.log"
    log.write_bytes(b"first\n" + b"y" * (3 << 20) + b"\nafter\nlast")
    tail = _Tail(str(log), 0)
    try:
        got = tail.rest()
    finally:
        tail.close()
    assert [line[:5] for line in got] == [b"first", b"yyyyy", b"after", b"last"]
    assert tail.offset == log.stat().st_size
