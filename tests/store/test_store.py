"""Tests of the SQLite store on real database files, and the export shape the README gives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.model import Datagram, FailureDetail, Policy, PolicyResult
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import collected_async, collected_schema, report_status, reports, tx
from tlsrpt_reporter.store import ingest_position as positions
from tlsrpt_reporter.wire.aggregate import Aggregate

DAY = "2026-03-01"
NEXT_DAY = "2026-03-02"
RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"
STS = Policy(
    "sts",
    "example.com",
    ("version: STSv1", "mode: enforce", "mx: mail.example.com", "max_age: 86400"),
    ("mail.example.com",),
)
TLSA = Policy("tlsa", "mx.example.com", ("3 1 1 8A9A70596E869BED72C69D97A8895DFA",))
NO_POLICY = Policy("no-policy-found", "example.org")
EXPIRED = FailureDetail(
    "certificate-expired",
    sending_mta_ip="192.0.2.10",
    receiving_mx_hostname="mail.example.com",
    receiving_ip="198.51.100.7",
)
TABLES = ("policy_count", "failure_count", "day_counter")
LINE_KEYS = {"day", "domain", "record", "policy", "summary", "failure-details"}


def add(
    agg: Aggregate,
    day: str,
    domain: str,
    record: str,
    *results: PolicyResult,
    now: float = 1000.0,
) -> None:
    assert agg.add(day, now, Datagram(domain=domain, record=record, results=results))


def sample_aggregate(day: str = DAY, now: float = 1000.0) -> Aggregate:
    """example.com: STS 2 ok + 1 failed (EXPIRED); example.org: no policy, no record, 1 ok."""
    agg = Aggregate()
    add(agg, day, "example.com", RECORD, PolicyResult(STS, False), now=now)
    add(agg, day, "example.com", RECORD, PolicyResult(STS, False), now=now)
    add(agg, day, "example.com", RECORD, PolicyResult(STS, True, (EXPIRED,)), now=now)
    add(agg, day, "example.org", "", PolicyResult(NO_POLICY, False), now=now)
    agg.reject(day, "not-json")
    return agg


def lines_by_domain(conn: sqlite3.Connection, day: str = DAY) -> dict[str, dict[str, Any]]:
    lines = list(store.iter_day(conn, day))
    by_domain = {line["domain"]: line for line in lines}
    assert len(by_domain) == len(lines)
    return by_domain


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "collectd.sqlite"


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    connection = store.connect(db_path)
    yield connection
    connection.close()


# --- opening --------------------------------------------------------------------------------


def test_connect_creates_the_current_schema_in_wal_mode(db_path: Path) -> None:
    store.connect(db_path).close()
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 3 == store.SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        raw.close()
    assert {*TABLES, "ingest_position"} <= names


def test_connect_again_keeps_the_data(db_path: Path) -> None:
    first = store.connect(db_path)
    store.write(first, store.build_batch(sample_aggregate()))
    first.close()
    again = store.connect(db_path)
    try:
        assert (
            lines_by_domain(again)["example.org"]["summary"]["total-successful-session-count"] == 1
        )
        assert again.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    finally:
        again.close()


def test_connect_without_create_on_missing_file_names_the_path(db_path: Path) -> None:
    with pytest.raises(StoreError, match=re.escape(str(db_path))):
        store.connect(db_path, create=False)
    assert not db_path.exists()


def test_connect_without_create_reads_an_existing_store(db_path: Path) -> None:
    writer = store.connect(db_path)
    store.write(writer, store.build_batch(sample_aggregate()))
    writer.close()
    reader = store.connect(db_path, create=False)
    try:
        assert set(lines_by_domain(reader)) == {"example.com", "example.org"}
    finally:
        reader.close()


def _make_db(path: Path, user_version: int) -> None:
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE t (x)")
    raw.execute(f"PRAGMA user_version = {user_version}")
    raw.commit()
    raw.close()


def test_connect_refuses_a_newer_schema(db_path: Path) -> None:
    _make_db(db_path, store.SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer"):
        store.connect(db_path)


def test_connect_without_create_refuses_another_schema_naming_the_path(db_path: Path) -> None:
    _make_db(db_path, store.SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match=re.escape(str(db_path))):
        store.connect(db_path, create=False)


def test_connect_without_create_refuses_an_unmigrated_database(db_path: Path) -> None:
    _make_db(db_path, 0)
    with pytest.raises(StoreError, match=re.escape(str(db_path))):
        store.connect(db_path, create=False)


def test_connect_refusing_a_newer_schema_names_the_path(db_path: Path) -> None:
    _make_db(db_path, store.SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match=re.escape(str(db_path))):
        store.connect(db_path)


def test_connect_on_a_file_that_is_not_a_database_names_the_path(db_path: Path) -> None:
    db_path.write_bytes(b"this is not an SQLite database, just some text" * 100)
    with pytest.raises(StoreError, match=re.escape(str(db_path))):
        store.connect(db_path, create=False)


def test_connect_in_a_missing_directory_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "collectd.sqlite"
    with pytest.raises(StoreError, match=re.escape(str(path))):
        store.connect(path)


# --- export shape ---------------------------------------------------------------------------


def test_iter_day_yields_the_interface_export_shape(conn: sqlite3.Connection) -> None:
    store.write(conn, store.build_batch(sample_aggregate()))
    lines = lines_by_domain(conn)
    assert lines["example.com"] == {
        "day": DAY,
        "domain": "example.com",
        "record": RECORD,
        "policy": {
            "policy-type": "sts",
            "policy-domain": "example.com",
            "policy-string": [
                "version: STSv1",
                "mode: enforce",
                "mx: mail.example.com",
                "max_age: 86400",
            ],
            "mx-host": ["mail.example.com"],
        },
        "summary": {"total-successful-session-count": 2, "total-failure-session-count": 1},
        "failure-details": [
            {
                "result-type": "certificate-expired",
                "sending-mta-ip": "192.0.2.10",
                "receiving-mx-hostname": "mail.example.com",
                "receiving-ip": "198.51.100.7",
                "failed-session-count": 1,
            }
        ],
    }
    # No policy text: no policy-string / mx-host keys; no record: empty text; no failures:
    # an empty failure-details list.
    assert lines["example.org"] == {
        "day": DAY,
        "domain": "example.org",
        "record": "",
        "policy": {"policy-type": "no-policy-found", "policy-domain": "example.org"},
        "summary": {"total-successful-session-count": 1, "total-failure-session-count": 0},
        "failure-details": [],
    }


def test_export_lines_are_json_lines(conn: sqlite3.Connection) -> None:
    store.write(conn, store.build_batch(sample_aggregate()))
    for line in store.iter_day(conn, DAY):
        text = json.dumps(line)
        assert "\n" not in text
        assert json.loads(text) == line
        assert set(line) == LINE_KEYS


def test_unknown_and_empty_detail_fields_are_omitted_never_null_or_empty(
    conn: sqlite3.Connection,
) -> None:
    bare = FailureDetail("starttls-not-supported")
    blank = FailureDetail(
        "validation-failure", receiving_mx_helo="", failure_reason_code="x", receiving_ip=""
    )
    agg = Aggregate()
    add(agg, DAY, "example.com", RECORD, PolicyResult(TLSA, True, (bare, blank)))
    store.write(conn, store.build_batch(agg))
    (line,) = store.iter_day(conn, DAY)
    details = sorted(line["failure-details"], key=lambda d: d["result-type"])
    assert details == [
        {"result-type": "starttls-not-supported", "failed-session-count": 1},
        {
            "result-type": "validation-failure",
            "failure-reason-code": "x",
            "failed-session-count": 1,
        },
    ]


def test_every_optional_detail_field_is_exported_under_its_rfc_name(
    conn: sqlite3.Connection,
) -> None:
    detail = FailureDetail(
        "tlsa-invalid",
        sending_mta_ip="192.0.2.10",
        receiving_mx_hostname="mx.example.com",
        receiving_mx_helo="mx.example.com ESMTP \ufffd",
        receiving_ip="2001:db8::7",
        additional_information="https://example.com/why",
        failure_reason_code="tlsa-no-match",
    )
    agg = Aggregate()
    add(agg, DAY, "mx.example.com", RECORD, PolicyResult(TLSA, True, (detail,)))
    store.write(conn, store.build_batch(agg))
    (line,) = store.iter_day(conn, DAY)
    assert line["failure-details"] == [
        {
            "result-type": "tlsa-invalid",
            "sending-mta-ip": "192.0.2.10",
            "receiving-mx-hostname": "mx.example.com",
            "receiving-mx-helo": "mx.example.com ESMTP \ufffd",
            "receiving-ip": "2001:db8::7",
            "additional-information": "https://example.com/why",
            "failure-reason-code": "tlsa-no-match",
            "failed-session-count": 1,
        }
    ]


def test_same_detail_under_two_policies_is_counted_per_policy(conn: sqlite3.Connection) -> None:
    agg = Aggregate()
    add(agg, DAY, "example.com", RECORD, PolicyResult(STS, True, (EXPIRED,)))
    add(agg, DAY, "example.com", RECORD, PolicyResult(STS, True, (EXPIRED,)))
    add(agg, DAY, "example.com", RECORD, PolicyResult(TLSA, True, (EXPIRED,)))
    store.write(conn, store.build_batch(agg))
    counts = {
        line["policy"]["policy-type"]: line["failure-details"][0]["failed-session-count"]
        for line in store.iter_day(conn, DAY)
    }
    assert counts == {"sts": 2, "tlsa": 1}


def test_policies_differing_only_in_policy_text_are_separate_lines(
    conn: sqlite3.Connection,
) -> None:
    reordered = Policy("sts", "example.com", tuple(reversed(STS.policy_string)), STS.mx_host)
    agg = Aggregate()
    add(agg, DAY, "example.com", RECORD, PolicyResult(STS, False))
    add(agg, DAY, "example.com", RECORD, PolicyResult(reordered, False))
    store.write(conn, store.build_batch(agg))
    texts = sorted(line["policy"]["policy-string"] for line in store.iter_day(conn, DAY))
    assert texts == sorted([list(STS.policy_string), list(reordered.policy_string)])


def test_non_ascii_text_survives_the_store(conn: sqlite3.Connection) -> None:
    policy = Policy("sts", "xn--bcher-kva.example", ("mx: *.bücher.example \u2603",))
    detail = FailureDetail("sts-policy-invalid", additional_information="grüße \U0001f600")
    agg = Aggregate()
    add(
        agg,
        DAY,
        "xn--bcher-kva.example",
        "v=TLSRPTv1; rua=mailto:ä@x",
        PolicyResult(policy, True, (detail,)),
    )
    store.write(conn, store.build_batch(agg))
    (line,) = store.iter_day(conn, DAY)
    assert line["record"] == "v=TLSRPTv1; rua=mailto:ä@x"
    assert line["policy"]["policy-string"] == ["mx: *.bücher.example \u2603"]
    assert line["failure-details"][0]["additional-information"] == "grüße \U0001f600"


def test_iter_day_yields_only_that_day(conn: sqlite3.Connection) -> None:
    agg = sample_aggregate(DAY)
    add(agg, NEXT_DAY, "next.example", RECORD, PolicyResult(STS, True, (EXPIRED,)))
    store.write(conn, store.build_batch(agg))
    assert set(lines_by_domain(conn, DAY)) == {"example.com", "example.org"}
    (line,) = store.iter_day(conn, NEXT_DAY)
    assert line["day"] == NEXT_DAY
    assert line["domain"] == "next.example"
    assert line["summary"]["total-failure-session-count"] == 1
    assert list(store.iter_day(conn, "2026-02-28")) == []


# --- writing --------------------------------------------------------------------------------


def test_writing_the_same_aggregate_twice_doubles_every_count(conn: sqlite3.Connection) -> None:
    agg = sample_aggregate()
    store.write(conn, store.build_batch(agg))
    once = lines_by_domain(conn)
    counters_once = store.day_counters(conn, DAY)
    store.write(conn, store.build_batch(agg))
    twice = lines_by_domain(conn)
    assert twice["example.com"]["summary"] == {
        "total-successful-session-count": 4,
        "total-failure-session-count": 2,
    }
    assert twice["example.com"]["failure-details"][0]["failed-session-count"] == 2
    assert twice["example.org"]["summary"]["total-successful-session-count"] == 2
    assert once["example.com"]["summary"]["total-successful-session-count"] == 2
    assert store.day_counters(conn, DAY) == {k: 2 * v for k, v in counters_once.items()}


def test_writes_from_separate_aggregates_add_into_the_same_rows(
    conn: sqlite3.Connection,
) -> None:
    store.write(conn, store.build_batch(sample_aggregate(now=500.0)))
    store.write(conn, store.build_batch(sample_aggregate(now=100.0)))
    store.write(conn, store.build_batch(sample_aggregate(now=900.0)))
    lines = lines_by_domain(conn)
    assert lines["example.com"]["summary"]["total-successful-session-count"] == 6
    rows = conn.execute(
        "SELECT first_seen, last_seen FROM policy_count WHERE domain = 'example.com'"
    ).fetchall()
    assert rows == [(100.0, 900.0)]
    seen = store.records_last_seen(conn, DAY)
    assert seen[("example.com", RECORD)] == 900.0


def test_batch_holds_one_row_per_key() -> None:
    batch = store.build_batch(sample_aggregate())
    sizes = [len(list(rows)) for _, rows in batch.statements]
    # 2 policy rows, 1 failure detail, and the day counters.
    assert sizes == [2, 1, len(sample_aggregate().counters)]


def test_empty_batch_writes_nothing(conn: sqlite3.Connection) -> None:
    store.write(conn, store.build_batch(Aggregate()))
    for table in TABLES:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


def test_day_counters_returns_that_days_counters(conn: sqlite3.Connection) -> None:
    agg = sample_aggregate(DAY)
    agg.reject(NEXT_DAY, "oversize")
    store.write(conn, store.build_batch(agg))
    counters = store.day_counters(conn, DAY)
    assert counters == {name: n for (day, name), n in agg.counters.items() if day == DAY}
    assert counters["received"] == 5
    assert counters["accepted"] == 4
    assert counters["rejected:not-json"] == 1
    assert store.day_counters(conn, NEXT_DAY) == {
        "received": 1,
        "rejected": 1,
        "rejected:oversize": 1,
    }
    assert store.day_counters(conn, "2026-01-01") == {}


def test_prune_deletes_older_days_from_every_table(db_path: Path, conn: sqlite3.Connection) -> None:
    days = ["2026-02-27", "2026-02-28", DAY, NEXT_DAY]
    for day in days:
        store.write(conn, store.build_batch(sample_aggregate(day)))

    async def prune() -> None:
        db = await collected_async.connect(db_path)
        try:
            await collected_async.prune(db, DAY)
        finally:
            await db.close()

    asyncio.run(prune())
    for table in TABLES:
        remaining = {r[0] for r in conn.execute(f"SELECT DISTINCT day FROM {table}")}
        assert remaining == {DAY, NEXT_DAY}, table
    assert list(store.iter_day(conn, "2026-02-28")) == []
    assert store.day_counters(conn, "2026-02-27") == {}
    assert len(list(store.iter_day(conn, DAY))) == 2


def test_reader_reads_while_a_writer_holds_a_write_transaction(db_path: Path) -> None:
    writer = store.connect(db_path)
    store.write(writer, store.build_batch(sample_aggregate()))
    reader = store.connect(db_path, create=False)
    reader.execute("PRAGMA busy_timeout = 200")
    try:
        writer.execute("BEGIN EXCLUSIVE")
        for sql, rows in store.build_batch(sample_aggregate()).statements:
            if rows:
                writer.executemany(sql, rows)
        # The reader is not blocked, and sees the last committed state.
        lines = lines_by_domain(reader)
        assert lines["example.com"]["summary"]["total-successful-session-count"] == 2
        assert store.day_counters(reader, DAY)["received"] == 5
        writer.execute("COMMIT")
        lines = lines_by_domain(reader)
        assert lines["example.com"]["summary"]["total-successful-session-count"] == 4
    finally:
        reader.close()
        writer.close()


def test_days_lists_each_day_with_counters_once_in_order(conn: sqlite3.Connection) -> None:
    assert store.days(conn) == []
    store.write(conn, store.build_batch(sample_aggregate(NEXT_DAY)))
    store.write(conn, store.build_batch(sample_aggregate(DAY)))
    store.write(conn, store.build_batch(sample_aggregate(DAY)))
    assert store.days(conn) == [DAY, NEXT_DAY]


_FAILING = ("INSERT INTO no_such_table VALUES (?)", [(1,)])


def test_write_is_all_or_nothing_and_names_the_file(
    db_path: Path, conn: sqlite3.Connection
) -> None:
    batch = store.build_batch(sample_aggregate())
    with pytest.raises(StoreError, match=re.escape(str(db_path))):
        store.write(conn, store.WriteBatch(statements=(*batch.statements, _FAILING)))
    assert not conn.in_transaction
    assert store.days(conn) == []
    assert list(store.iter_day(conn, DAY)) == []


# --- the daemon's asynchronous access ---------------------------------------------------------


def test_async_write_stores_what_write_stores(tmp_path: Path) -> None:
    sync_db, async_db = tmp_path / "sync.sqlite", tmp_path / "async.sqlite"
    with store.connect(sync_db) as conn:
        store.write(conn, store.build_batch(sample_aggregate()))
    store.connect(async_db).close()

    async def write() -> None:
        db = await collected_async.connect(async_db)
        try:
            await collected_async.write(db, store.build_batch(sample_aggregate()))
        finally:
            await db.close()

    asyncio.run(write())
    sync_conn, async_conn = store.connect(sync_db), store.connect(async_db)
    try:
        assert list(store.iter_day(async_conn, DAY)) == list(store.iter_day(sync_conn, DAY))
        assert store.day_counters(async_conn, DAY) == store.day_counters(sync_conn, DAY)
    finally:
        sync_conn.close()
        async_conn.close()


def test_async_write_is_all_or_nothing(db_path: Path, conn: sqlite3.Connection) -> None:
    batch = store.build_batch(sample_aggregate())

    async def write() -> None:
        db = await collected_async.connect(db_path)
        try:
            with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
                await collected_async.write(
                    db, store.WriteBatch(statements=(*batch.statements, _FAILING))
                )
            assert not db.in_transaction
        finally:
            await db.close()

    asyncio.run(write())
    assert store.days(conn) == []


def test_async_write_fails_fast_while_another_process_holds_the_write_lock(
    db_path: Path, conn: sqlite3.Connection
) -> None:
    # The flush keeps its aggregate in memory and tries again at the next interval: it must not
    # wait for the lock for seconds.
    conn.execute("BEGIN IMMEDIATE")

    async def write() -> float:
        db = await collected_async.connect(db_path)
        started = time.monotonic()
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await collected_async.write(db, store.build_batch(sample_aggregate()))
            return time.monotonic() - started
        finally:
            await db.close()

    try:
        assert asyncio.run(write()) < 2.0
    finally:
        conn.execute("ROLLBACK")
    assert store.days(conn) == []


# --- the transaction helper -----------------------------------------------------------------


class Boom(Exception):
    pass


def _scratch(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute("CREATE TABLE t (x INTEGER)")
    return conn


def _committed(path: Path) -> list[int]:
    """What another connection sees: only committed rows."""
    other = sqlite3.connect(path)
    try:
        return [x for (x,) in other.execute("SELECT x FROM t ORDER BY x")]
    finally:
        other.close()


def test_transaction_commits_when_the_block_ends(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    conn = _scratch(db)
    with tx.transaction(conn) as same:
        assert same is conn
        assert conn.in_transaction
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (2)")
        assert _committed(db) == []
    assert not conn.in_transaction
    assert _committed(db) == [1, 2]
    conn.close()


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt, sqlite3.IntegrityError])
def test_transaction_rolls_back_and_reraises_on_any_exception(
    tmp_path: Path, error: type[BaseException]
) -> None:
    db = tmp_path / "t.sqlite"
    conn = _scratch(db)
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(error), tx.transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise error("in the block")
    assert not conn.in_transaction
    assert _committed(db) == [1]
    with tx.transaction(conn):  # the connection goes on working
        conn.execute("INSERT INTO t VALUES (3)")
    assert _committed(db) == [1, 3]
    conn.close()


def test_transaction_takes_the_write_lock_at_begin(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    conn, other = _scratch(db), sqlite3.connect(db, isolation_level=None, timeout=0)
    with tx.transaction(conn), pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    conn.close()
    other.close()


def test_a_failing_commit_rolls_back_and_raises(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    with pytest.raises(sqlite3.IntegrityError), tx.transaction(conn):
        conn.execute("INSERT INTO child VALUES (7)")  # checked only at COMMIT
    # SQLite keeps a transaction open when COMMIT fails on a deferred constraint.
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM child").fetchone()[0] == 0
    conn.close()


def test_a_rollback_sqlite_made_itself_does_not_hide_the_error(tmp_path: Path) -> None:
    conn = _scratch(tmp_path / "t.sqlite")
    with pytest.raises(Boom, match="the real error"), tx.transaction(conn):
        conn.execute("ROLLBACK")  # as SQLite does on its own after a full disk or I/O error
        raise Boom("the real error")
    conn.close()


@pytest.mark.parametrize("error", [Boom, asyncio.CancelledError])
def test_async_transaction_commits_or_rolls_back_and_reraises(
    tmp_path: Path, error: type[BaseException]
) -> None:
    db = tmp_path / "t.sqlite"
    _scratch(db).close()

    async def run() -> None:
        async with aiosqlite.connect(db, isolation_level=None) as conn:
            async with tx.async_transaction(conn) as same:
                assert same is conn
                assert conn.in_transaction
                await conn.execute("INSERT INTO t VALUES (1)")
            assert not conn.in_transaction
            assert _committed(db) == [1]
            with pytest.raises(error):
                async with tx.async_transaction(conn):
                    await conn.execute("INSERT INTO t VALUES (2)")
                    raise error("in the block")
            assert not conn.in_transaction

    asyncio.run(run())
    assert _committed(db) == [1]


# --- ingest-log's positions and the migration that gave them a table ----------------------------

LOG = "/var/log/mail.log"


def _save(conn: sqlite3.Connection, path: str, position: positions.IngestPosition) -> None:
    statement = positions.save_statement(path, "postfix", position, 1234.5)
    store.write(conn, store.WriteBatch(statements=(statement,)))


def test_ingest_position_is_saved_replaced_and_loaded_per_file(conn: sqlite3.Connection) -> None:
    assert positions.load(conn, LOG) is None
    first = positions.IngestPosition(1, 2, 300, {"adapter": {"open": ["q1"]}, "years": {}})
    _save(conn, LOG, first)
    assert positions.load(conn, LOG) == first
    later = positions.IngestPosition(1, 5, 40, {"adapter": {}, "years": {"12": 2026}})
    _save(conn, LOG, later)
    _save(conn, "/var/log/exim4/mainlog", first)
    assert positions.load(conn, LOG) == later
    assert positions.load(conn, "/var/log/exim4/mainlog") == first
    row = conn.execute(
        "SELECT format, updated FROM ingest_position WHERE path = ?", (LOG,)
    ).fetchone()
    assert row == ("postfix", 1234.5)


def test_ingest_position_commits_with_the_counts_of_its_batch(conn: sqlite3.Connection) -> None:
    position = positions.IngestPosition(1, 2, 300, {})
    saving = positions.save_statement(LOG, "postfix", position, 0.0)
    failing = (*store.build_batch(sample_aggregate()).statements, saving, _FAILING)
    with pytest.raises(StoreError):
        store.write(conn, store.WriteBatch(statements=failing))
    assert positions.load(conn, LOG) is None
    # A batch's rows are generated as they are written: a new batch for the next write.
    batch = store.build_batch(sample_aggregate())
    store.write(conn, store.WriteBatch(statements=(*batch.statements, saving)))
    assert positions.load(conn, LOG) == position
    assert store.days(conn) == [DAY]


# What ingest-log of schema version 1 ran before reading or writing a position.
_OLD_POSITION_TABLE = """
CREATE TABLE IF NOT EXISTS ingest_position (
    path TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    device INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    state TEXT NOT NULL,
    updated REAL NOT NULL
)"""


def _version_1_database(path: Path, *, with_positions: bool) -> None:
    """A collector database as version 1 left it: aggregates, and with ``with_positions`` a
    position that ingest-log saved in the table it created on demand."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.executescript(collected_schema._MIGRATIONS[0])
    raw.execute("PRAGMA user_version = 1")
    raw.execute("PRAGMA journal_mode = WAL")
    store.write(raw, store.build_batch(sample_aggregate()))
    if with_positions:
        raw.execute(_OLD_POSITION_TABLE)
        raw.execute(
            "INSERT OR REPLACE INTO ingest_position"
            "(path, format, device, inode, offset, state, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (LOG, "postfix", 8, 9, 4096, json.dumps({"adapter": {"a": 1}, "years": {}}), 1.0),
        )
    raw.close()


@contextlib.contextmanager
def _migrated_version_1(db_path: Path, *, with_positions: bool) -> Iterator[sqlite3.Connection]:
    """A version 1 database (``with_positions`` as in :func:`_version_1_database`), opened by
    the store, which has migrated it to the current version: the connection, closed after."""
    _version_1_database(db_path, with_positions=with_positions)
    conn = store.connect(db_path)
    try:
        assert collected_schema.user_version(conn) == store.SCHEMA_VERSION
        yield conn
    finally:
        conn.close()


def test_a_version_1_database_with_positions_saved_the_old_way_is_migrated_keeping_them(
    db_path: Path,
) -> None:
    with _migrated_version_1(db_path, with_positions=True) as conn:
        saved = positions.load(conn, LOG)
        assert saved == positions.IngestPosition(8, 9, 4096, {"adapter": {"a": 1}, "years": {}})
        assert set(lines_by_domain(conn)) == {"example.com", "example.org"}
        _save(conn, LOG, positions.IngestPosition(8, 9, 5000, {}))
        assert positions.load(conn, LOG) == positions.IngestPosition(8, 9, 5000, {})


def test_a_version_1_database_without_positions_is_migrated_and_can_save_them(
    db_path: Path,
) -> None:
    with _migrated_version_1(db_path, with_positions=False) as conn:
        assert positions.load(conn, LOG) is None
        _save(conn, LOG, positions.IngestPosition(1, 2, 3, {}))
        assert positions.load(conn, LOG) == positions.IngestPosition(1, 2, 3, {})
        store.write(conn, store.build_batch(sample_aggregate()))
        counts = lines_by_domain(conn)["example.com"]["summary"]
        assert counts["total-successful-session-count"] == 4


def test_a_reader_reads_a_version_1_database_without_migrating_it(db_path: Path) -> None:
    # The reporter may run before the upgraded collector has migrated the database.
    _version_1_database(db_path, with_positions=False)
    reader = store.connect(db_path, create=False)
    try:
        assert set(lines_by_domain(reader)) == {"example.com", "example.org"}
        assert store.days(reader) == [DAY]
        assert collected_schema.user_version(reader) == 1
    finally:
        reader.close()


def test_migrate_skips_a_step_another_process_made_meanwhile(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite3.connect(db_path).close()  # version 0, as both processes see it at first
    late = sqlite3.connect(db_path, isolation_level=None)
    store.connect(db_path).close()  # the first process migrates
    stale = [0]  # the late one read version 0 before the first one committed
    real = collected_schema.user_version
    monkeypatch.setattr(
        collected_schema, "user_version", lambda conn: stale.pop() if stale else real(conn)
    )
    collected_schema.migrate(late)  # CREATE TABLE policy_count again would fail
    assert real(late) == store.SCHEMA_VERSION
    late.close()


# --- the reporter's state: summaries for `status` -------------------------------------------


def _report(domain: str, report_id: str) -> dict[str, Any]:
    return {"domain": domain, "report_id": report_id, "message_id": f"<{report_id}@x>",
            "date": "d", "filename": "f", "gzip": b"", "summary": "", "record": "",
            "send_at": 0.0}  # fmt: skip


@pytest.fixture
def state(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """DAY (built at 1000, with a note): a.example delivered by mail while its HTTPS
    destination retries (503), b.example given up, c.example pending; NEXT_DAY (built at
    2000): d.example pending."""
    conn = reports.connect(tmp_path / "reporter.sqlite")
    reports.insert_day(
        conn,
        DAY,
        1000.0,
        [_report("a.example", "r1"), _report("b.example", "r2"), _report("c.example", "r3")],
        note="one source failed",
    )
    reports.insert_day(conn, NEXT_DAY, 2000.0, [_report("d.example", "r4")])
    mail, web = "mailto:tlsrpt@a.example", "https://a.example/r"
    reports.add_destinations(conn, 1, [(mail, "pending", ""), (web, "pending", "")], 1000.0)
    reports.set_delivery(conn, 1, mail, state="sent", accepted_at=1100.0)
    reports.set_delivery(conn, 1, web, state="failed-retrying", last_error="HTTP 503",
                         error_kind="http-5xx", next_attempt=1500.0)  # fmt: skip
    assert reports.refresh_report_status(conn, 1) == "delivered"
    reports.add_destinations(conn, 2, [("https://b.example/r", "pending", "")], 1000.0)
    reports.set_delivery(conn, 2, "https://b.example/r", state="given-up",
                         last_error="connection refused", next_attempt=1200.0)  # fmt: skip
    assert reports.refresh_report_status(conn, 2) == "given-up"
    yield conn
    conn.close()


def test_built_days_and_their_summary(state: sqlite3.Connection) -> None:
    built = report_status.built_days(state)
    assert list(built.items()) == [(DAY, "one source failed"), (NEXT_DAY, "")]
    assert report_status.built_summary(state) == (2, 2000.0)
    assert report_status.built_summary(state, DAY) == (1, 1000.0)
    assert report_status.built_summary(state, "2026-01-01") == (0, None)


def test_report_and_delivery_counts_by_day_or_all_days(state: sqlite3.Connection) -> None:
    assert report_status.report_counts(state, DAY) == {"delivered": 1, "given-up": 1, "pending": 1}
    assert report_status.report_counts(state, NEXT_DAY) == {"pending": 1}
    assert report_status.report_counts(state) == {"delivered": 1, "given-up": 1, "pending": 2}
    assert report_status.report_counts(state, "2026-01-01") == {}
    day = {"failed-retrying": 1, "given-up": 1, "sent": 1}
    assert report_status.delivery_counts(state, DAY) == day
    assert report_status.delivery_counts(state) == day
    assert report_status.delivery_counts(state, NEXT_DAY) == {}


def test_last_accepted_and_last_errors(state: sqlite3.Connection) -> None:
    assert report_status.last_accepted(state) == 1100.0
    assert report_status.last_accepted(state, DAY) == 1100.0
    assert report_status.last_accepted(state, NEXT_DAY) is None
    assert report_status.last_errors(state, DAY) == [
        ("a.example", "https://a.example/r", "HTTP 503"),  # next attempt 1500
        ("b.example", "https://b.example/r", "connection refused"),  # 1200
    ]
    assert report_status.last_errors(state, DAY, limit=1) == [
        ("a.example", "https://a.example/r", "HTTP 503")
    ]
    assert report_status.last_errors(state, NEXT_DAY) == []


def test_failed_deliveries_and_the_oldest_unsent_report(state: sqlite3.Connection) -> None:
    assert sorted(report_status.failed_deliveries(state)) == [
        ("failed-retrying", "http-5xx", "HTTP 503"),
        ("given-up", "", "connection refused"),
    ]
    assert report_status.failed_deliveries(state, NEXT_DAY) == []
    assert report_status.oldest_unsent_built_at(state) == 1000.0  # c.example
    assert report_status.oldest_unsent_built_at(state, NEXT_DAY) == 2000.0
    reports.set_report(state, 3, status="no-destination")
    assert report_status.oldest_unsent_built_at(state) == 2000.0
    reports.set_report(state, 4, status="no-destination")
    assert report_status.oldest_unsent_built_at(state) is None
