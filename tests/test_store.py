"""Tests of the SQLite store on real database files, against the export shape of INTERFACE.md."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.model import Datagram, FailureDetail, Policy, PolicyResult
from tlsrpt_reporter.store import collected as store
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


def test_connect_creates_schema_version_1_in_wal_mode(db_path: Path) -> None:
    store.connect(db_path).close()
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
        assert raw.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        raw.close()
    assert set(TABLES) <= names


def test_connect_again_keeps_the_data(db_path: Path) -> None:
    first = store.connect(db_path)
    store.write(first, store.build_batch(sample_aggregate()))
    first.close()
    again = store.connect(db_path)
    try:
        assert (
            lines_by_domain(again)["example.org"]["summary"]["total-successful-session-count"] == 1
        )
        assert again.execute("PRAGMA user_version").fetchone()[0] == 1
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


def test_prune_deletes_older_days_from_every_table(conn: sqlite3.Connection) -> None:
    days = ["2026-02-27", "2026-02-28", DAY, NEXT_DAY]
    for day in days:
        store.write(conn, store.build_batch(sample_aggregate(day)))
    store.prune(conn, DAY)
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
