"""The collector database's step to version 3 (store/collected_canon.py): rows stored by older
versions, in forms the decoder no longer produces, are rewritten into the canonical forms
(docs/canonical-forms.md), merged where they became equal, under the keys the collector
computes now."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tlsrpt_reporter.model import Datagram, FailureDetail, Policy, PolicyResult
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import collected_canon, collected_schema, tx
from tlsrpt_reporter.wire import canon
from tlsrpt_reporter.wire.aggregate import Aggregate

DAY = "2026-03-01"
NEXT_DAY = "2026-03-02"
RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"
# One TLSA RRset as two older collectors stored it: records in another order, hex in lower case.
TLSA_ONE = Policy("tlsa", "mx.example.com", ("3 1 1 aabb", "2 0 1 CCDD"))
TLSA_OTHER = Policy("tlsa", "MX.Example.com.", ("2 0 1 ccdd", "3  1 1 AABB"))
TLSA = Policy("tlsa", "mx.example.com", ("2 0 1 CCDD", "3 1 1 AABB"))
# An STS policy with an empty policy-string element.
STS_RAW = Policy(
    "sts", "example.net", ("version: STSv1", "", "mode: enforce"), ("Mail.Example.net.",)
)
STS = Policy("sts", "example.net", ("version: STSv1", "mode: enforce"), ("mail.example.net",))
# A policy-string element too long to keep whole: the decoder now rejects such a datagram.
TOO_LONG = Policy("tlsa", "mx.example.org", ("3 1 1 " + "A" * canon.MAX_POLICY_STRING,))
RAW_DETAIL = FailureDetail(
    "validation-failure",
    sending_mta_ip="fe80::1%eth0",
    receiving_mx_hostname="MX.Example.COM.",
    receiving_mx_helo="250-mx.example.com Hello client\r\n250-PIPELINING\r\n250 8BITMIME",
    receiving_ip="::ffff:192.0.2.7",
)
OTHER_RAW_DETAIL = FailureDetail(
    "validation-failure",
    sending_mta_ip="FE80::1",
    receiving_mx_hostname="mx.example.com",
    receiving_mx_helo="mx.example.com",
    receiving_ip="192.0.2.7",
)
DETAIL = FailureDetail(
    "validation-failure",
    sending_mta_ip="fe80::1",
    receiving_mx_hostname="mx.example.com",
    receiving_mx_helo="mx.example.com",
    receiving_ip="192.0.2.7",
)


def _add(agg: Aggregate, domain: str, record: str, result: PolicyResult, now: float) -> None:
    assert agg.add(DAY, now, Datagram(domain=domain, record=record, results=(result,)))


def _old_rows() -> Aggregate:
    """What a collector before the canonical forms stored for DAY."""
    agg = Aggregate()
    _add(agg, "example.com", RECORD, PolicyResult(TLSA_ONE, False), now=900.0)
    for _ in range(2):
        _add(agg, "example.com", RECORD, PolicyResult(TLSA_ONE, True, (RAW_DETAIL,)), now=1000.0)
    for _ in range(3):
        _add(agg, "example.com", RECORD, PolicyResult(TLSA_OTHER, False), now=2000.0)
    _add(agg, "example.com", RECORD, PolicyResult(TLSA_OTHER, True, (OTHER_RAW_DETAIL,)), 500.0)
    _add(agg, "example.net", "", PolicyResult(STS_RAW, False), now=1500.0)
    for _ in range(2):
        _add(agg, "example.org", "", PolicyResult(TOO_LONG, False), now=1200.0)
    return agg


def _version_2_database(path: Path, agg: Aggregate | None) -> None:
    """A collector database as version 2 left it, holding ``agg`` written the old way."""
    raw = sqlite3.connect(path, isolation_level=None)
    for step in collected_schema._MIGRATIONS[:2]:
        assert isinstance(step, str)
        raw.executescript(step)
    raw.execute("PRAGMA user_version = 2")
    if agg is not None:
        store.write(raw, store.build_batch(agg))
    raw.close()


def _by_policy(conn: sqlite3.Connection, day: str = DAY) -> dict[str, dict[str, Any]]:
    lines = list(store.iter_day(conn, day))
    by_policy = {line["policy"]["policy-domain"]: line for line in lines}
    assert len(by_policy) == len(lines)
    return by_policy


def _dump(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: sorted(conn.execute(f"SELECT * FROM {table}"))
        for table in ("policy_count", "failure_count", "day_counter")
    }


@pytest.fixture
def migrated(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A version 2 database holding :func:`_old_rows`, opened (so migrated) by the store."""
    path = tmp_path / "collectd.sqlite"
    _version_2_database(path, _old_rows())
    conn = store.connect(path)
    try:
        assert collected_schema.user_version(conn) == store.SCHEMA_VERSION == 3
        yield conn
    finally:
        conn.close()


def test_the_migration_puts_every_stored_value_in_canonical_form(
    migrated: sqlite3.Connection,
) -> None:
    lines = _by_policy(migrated)
    assert set(lines) == {"mx.example.com", "example.net"}
    assert lines["mx.example.com"]["policy"] == TLSA.to_json()
    assert lines["mx.example.com"]["failure-details"] == [DETAIL.to_json(3)]
    assert lines["example.net"]["policy"] == STS.to_json()


def test_two_spellings_of_one_tlsa_policy_become_one_line_with_the_counts_summed(
    migrated: sqlite3.Connection,
) -> None:
    line = _by_policy(migrated)["mx.example.com"]
    assert line["summary"] == {
        "total-successful-session-count": 4,
        "total-failure-session-count": 3,
    }
    sightings = migrated.execute(
        "SELECT first_seen, last_seen FROM policy_count WHERE domain = 'example.com'"
    ).fetchall()
    assert sightings == [(500.0, 2000.0)]
    assert store.records_last_seen(migrated, DAY) == {
        ("example.com", RECORD): 2000.0,
        ("example.net", ""): 1500.0,
    }


def test_a_line_with_a_policy_string_too_long_is_dropped_and_counted(
    migrated: sqlite3.Connection,
) -> None:
    assert "mx.example.org" not in _by_policy(migrated)
    counters = store.day_counters(migrated, DAY)
    assert counters[collected_canon.DROPPED_TOO_LONG] == 2
    # What the collector counted when it received the datagrams stays as it was.
    assert counters["received"] == counters["accepted"] == 10


def test_the_collector_adds_to_the_migrated_rows(migrated: sqlite3.Connection) -> None:
    agg = Aggregate()
    _add(agg, "example.com", RECORD, PolicyResult(TLSA, False), now=3000.0)
    _add(agg, "example.com", RECORD, PolicyResult(TLSA, True, (DETAIL,)), now=3000.0)
    store.write(migrated, store.build_batch(agg))
    line = _by_policy(migrated)["mx.example.com"]
    assert line["summary"] == {
        "total-successful-session-count": 5,
        "total-failure-session-count": 4,
    }
    assert line["failure-details"] == [DETAIL.to_json(4)]
    assert store.records_last_seen(migrated, DAY)[("example.com", RECORD)] == 3000.0


def test_migrating_again_or_opening_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "collectd.sqlite"
    _version_2_database(path, _old_rows())
    store.connect(path).close()
    conn = store.connect(path)
    before = _dump(conn)
    with tx.transaction(conn):
        collected_canon.rewrite_rows(conn)
    assert _dump(conn) == before
    conn.close()
    again = store.connect(path)
    assert _dump(again) == before
    assert collected_schema.user_version(again) == store.SCHEMA_VERSION
    again.close()


def test_every_day_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "collectd.sqlite"
    agg = _old_rows()
    assert agg.add(
        NEXT_DAY, 5000.0, Datagram("example.com", RECORD, (PolicyResult(TLSA_OTHER, False),))
    )
    _version_2_database(path, agg)
    conn = store.connect(path)
    assert _by_policy(conn, NEXT_DAY)["mx.example.com"]["policy"] == TLSA.to_json()
    assert _by_policy(conn)["mx.example.com"]["summary"]["total-successful-session-count"] == 4
    conn.close()


@pytest.mark.parametrize("old", [True, False], ids=["empty-version-2", "new-file"])
def test_an_empty_database_migrates(tmp_path: Path, old: bool) -> None:
    path = tmp_path / "collectd.sqlite"
    if old:
        _version_2_database(path, None)
    conn = store.connect(path)
    assert collected_schema.user_version(conn) == store.SCHEMA_VERSION
    assert all(rows == [] for rows in _dump(conn).values())
    assert store.days(conn) == []
    conn.close()


def test_a_reader_still_reads_a_version_2_database_without_migrating_it(tmp_path: Path) -> None:
    path = tmp_path / "collectd.sqlite"
    _version_2_database(path, _old_rows())
    reader = store.connect(path, create=False)
    assert collected_schema.user_version(reader) == 2
    assert len(list(store.iter_day(reader, DAY))) == 4
    reader.close()
