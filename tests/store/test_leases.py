"""Claims on shared work (issue 16): on PostgreSQL, which reporters share, a day's build, a
report to resolve and a delivery to attempt are each held by one reporter until its lease
expires, and a reporter skips a row another is claiming instead of waiting for it; on SQLite,
which has one reporter at a time, every claim succeeds and nothing is written."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import pytest
from rigs.postgres import SUPERUSER, Cluster

from tlsrpt_reporter.store import leases, pg_state
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store.state_db import StateDb, dialect

DAY = "2026-03-01"
NOW = 1_772_500_000.0


def _one_report(conn: StateDb) -> int:
    state.insert_report(
        conn,
        DAY,
        {"domain": "a.example", "report_id": "2026.03.01.x@r.example", "message_id": "m@r",
         "date": "Sun, 01 Mar 2026 00:00:00 +0000", "filename": "f.json.gz",
         "gzip": b"\x1f\x8b", "summary": "{}", "record": "", "send_at": NOW},
    )  # fmt: skip
    (report,) = conn.execute("SELECT id FROM report").fetchone()
    return int(report)


@pytest.fixture
def shared_db(pg_cluster: Cluster) -> str:
    """A fresh PostgreSQL state database."""
    name = f"leases_{secrets.token_hex(4)}"
    pg_cluster.create_database(name)
    return pg_cluster.url(name, SUPERUSER)


def _claim(conn: StateDb, report: int, dest: str, who: str, *, now: float, ttl: float) -> bool:
    """Claim a delivery the way the sender does, with the record of its attempt's start
    (store.leases.start_attempt), the attempt count as stored."""
    (seen,) = conn.execute(
        "SELECT attempts FROM delivery WHERE report = ? AND destination = ?", (report, dest)
    ).fetchone()
    return leases.start_attempt(conn, (report, dest), who, now=now, ttl=ttl, seen_attempts=seen,
                                values={"next_attempt": now})  # fmt: skip


def test_a_named_lease_is_held_by_one_until_it_expires(shared_db: str) -> None:
    conn = state.connect(shared_db)
    assert leases.claim_named(conn, "build:x", "a", NOW, ttl=60)
    assert not leases.claim_named(conn, "build:x", "b", NOW + 30, ttl=60)
    assert leases.named_holder(conn, "build:x", NOW + 30) == "a"
    assert leases.claim_named(conn, "build:x", "a", NOW + 50, ttl=60), "renewed by its holder"
    assert not leases.claim_named(conn, "build:x", "b", NOW + 100, ttl=60)
    assert leases.claim_named(conn, "build:x", "b", NOW + 110, ttl=60), "a's lease expired"
    leases.release_named(conn, "build:x", "a")  # not a's any more: nothing happens
    assert leases.named_holder(conn, "build:x", NOW + 111) == "b"
    leases.release_named(conn, "build:x", "b")
    assert leases.named_holder(conn, "build:x", NOW + 111) is None
    assert leases.claim_named(conn, "build:x", "a", NOW + 112, ttl=60)


def test_a_report_and_a_delivery_are_claimed_by_one_reporter_at_a_time(shared_db: str) -> None:
    conn = state.connect(shared_db)
    report = _one_report(conn)
    assert leases.claim_report(conn, report, "a", now=NOW, ttl=60)
    assert not leases.claim_report(conn, report, "b", now=NOW + 1, ttl=60)
    assert leases.claim_report(conn, report, "b", now=NOW + 61, ttl=60), "expired"
    state.add_destinations(conn, report, [("mailto:r@a.example", "pending", "")], NOW)
    assert not leases.claim_report(conn, report, "b", now=NOW + 62, ttl=60), "not pending"

    dest = "mailto:r@a.example"
    assert _claim(conn, report, dest, "a", now=NOW, ttl=300)
    assert not _claim(conn, report, dest, "b", now=NOW + 10, ttl=300)
    state.set_delivery(conn, report, dest, lease_holder="")  # as a failed attempt's record
    assert _claim(conn, report, dest, "b", now=NOW + 11, ttl=300)
    state.set_delivery(conn, report, dest, state="sent", accepted_at=NOW + 12)
    assert not _claim(conn, report, dest, "a", now=NOW + 400, ttl=300), (
        "a delivery accepted is never claimed again"
    )


def test_a_claim_skips_a_row_locked_by_another_reporter(shared_db: str) -> None:
    state_location = shared_db
    conn = state.connect(state_location)
    report = _one_report(conn)
    state.add_destinations(conn, report, [("mailto:r@a.example", "pending", "")], NOW)
    other = pg_state.connect(state_location, statement_timeout=2.0)
    assert dialect(other) == "postgresql"
    other.execute("BEGIN")
    other.execute("SELECT * FROM delivery WHERE report = ? FOR UPDATE", (report,))
    # Waiting for the lock would run into the 2 s statement timeout (a StoreError); a skip is
    # an immediate False.
    quick = pg_state.connect(state_location, statement_timeout=2.0)
    assert not _claim(quick, report, "mailto:r@a.example", "b", now=NOW, ttl=60)
    other.execute("ROLLBACK")
    assert _claim(quick, report, "mailto:r@a.example", "b", now=NOW, ttl=60)


def test_the_holder_names_this_process_and_stays_the_same() -> None:
    host, pid, _ = leases.holder().split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert leases.holder() == leases.holder()


def test_an_attempt_already_made_by_another_reporter_is_not_made_again(shared_db: str) -> None:
    conn = state.connect(shared_db)
    report = _one_report(conn)
    dest = "mailto:r@a.example"
    state.add_destinations(conn, report, [(dest, "pending", "")], NOW)
    values = {"attempts": 1, "first_attempt": NOW, "next_attempt": NOW + 60}
    assert leases.start_attempt(conn, (report, dest), "a", now=NOW, ttl=360, seen_attempts=0,
                                values=values)  # fmt: skip
    state.set_delivery(conn, report, dest, state="failed-retrying", lease_holder="")
    # b read the delivery before a's attempt: its count is stale, so it leaves it.
    assert not leases.start_attempt(conn, (report, dest), "b", now=NOW + 61, ttl=360,
                                     seen_attempts=0, values=values)  # fmt: skip
    again = {"attempts": 2, "next_attempt": NOW + 300}
    assert leases.start_attempt(conn, (report, dest), "b", now=NOW + 61, ttl=360,
                                seen_attempts=1, values=again)  # fmt: skip
    assert conn.execute("SELECT attempts, lease_holder FROM delivery").fetchall() == [(2, "b")]
    with pytest.raises(ValueError, match="not columns"):
        leases.start_attempt(conn, (report, dest), "b", now=NOW, ttl=1, seen_attempts=2,
                             values={"state": "sent"})  # fmt: skip


def test_on_sqlite_every_claim_succeeds_and_writes_nothing(tmp_path: Path) -> None:
    """One reporter at a time (the lock file): a restart after a crash must not wait for the
    lease of the process that died."""
    conn = state.connect(tmp_path / "state.sqlite")
    report = _one_report(conn)
    dest = "mailto:r@a.example"
    state.add_destinations(conn, report, [(dest, "pending", "")], NOW)
    assert leases.claim_named(conn, "build:x", "a", NOW) and leases.claim_named(
        conn, "build:x", "b", NOW
    )
    assert leases.claim_report(conn, report, "b", now=NOW, ttl=60)
    assert _claim(conn, report, dest, "a", now=NOW, ttl=60)
    assert _claim(conn, report, dest, "b", now=NOW, ttl=60)
    assert leases.start_attempt(conn, (report, dest), "b", now=NOW, ttl=60, seen_attempts=5,
                                values={"attempts": 1})  # fmt: skip
    assert conn.execute("SELECT count(*) FROM lease").fetchone() == (0,)
    assert conn.execute("SELECT attempts, lease_holder FROM delivery").fetchall() == [(1, "")]
