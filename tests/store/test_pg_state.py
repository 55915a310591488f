"""The PostgreSQL state connection takes the store's SQLite-shaped calls (issue 16): its
placeholders, literal percent signs, the write lock that serialises reporters, whole numbers
from ``sum()``, and the schema created once at the program's version. A real server
(rigs/postgres.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from rigs.postgres import SUPERUSER, Cluster

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.store import pg_state, state_schema_pg
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store.tx import transaction


def _database(cluster: Cluster, name: str) -> str:
    cluster.create_database(name)
    return cluster.url(name, SUPERUSER)


def test_placeholders_become_psycopgs_and_literals_keep_their_characters() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c LIKE 'mailto:%' AND d = '?' AND e = ?"
    assert pg_state.translate(sql, True) == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'mailto:%%' AND d = '?' AND e = %s"
    )
    assert pg_state.translate("SELECT 'it''s 100%'", False) == "SELECT 'it''s 100%'"
    assert pg_state.translate("SELECT 'it''s 100%' WHERE x = ?", True) == (
        "SELECT 'it''s 100%%' WHERE x = %s"
    )


def test_statements_run_with_sqlite_shaped_calls_and_sums_read_back_as_numbers(
    pg_cluster: Cluster,
) -> None:
    conn = pg_state.connect(_database(pg_cluster, "calls"))
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, x DOUBLE PRECISION)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [("a%", 2, 0.5), ("b?", 3, 1.25)])
    assert conn.execute("SELECT k FROM t WHERE k LIKE 'a%' ORDER BY k").fetchall() == [("a%",)]
    assert conn.execute("SELECT k FROM t WHERE k = ?", ("b?",)).fetchone() == ("b?",)
    total, real = conn.execute("SELECT sum(n), sum(x) FROM t").fetchone()
    assert (total, type(total)) == (5, int)
    assert (real, type(real)) == (1.75, float)
    assert [row for row in conn.execute("SELECT n FROM t ORDER BY n")] == [(2,), (3,)]
    with pytest.raises(StoreError, match="PRAGMA"):
        conn.execute("PRAGMA user_version")
    conn.close()


def test_a_transaction_rolls_back_when_its_block_raises(pg_cluster: Cluster) -> None:
    conn = pg_state.connect(_database(pg_cluster, "rollback"))
    conn.execute("CREATE TABLE t (n INTEGER)")
    with pytest.raises(RuntimeError), transaction(conn):
        conn.execute("INSERT INTO t VALUES (?)", (1,))
        assert conn.in_transaction
        raise RuntimeError
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_write_transactions_of_two_reporters_take_turns(pg_cluster: Cluster) -> None:
    """BEGIN IMMEDIATE is a database-wide write lock on SQLite; the read-then-write
    transactions of the store rely on it, so here too the second waits for the first."""
    url = _database(pg_cluster, "turns")
    first, second = pg_state.connect(url), pg_state.connect(url)
    first.execute("CREATE TABLE t (n INTEGER)")
    events: list[str] = []

    def other() -> None:
        with transaction(second):
            events.append("second has the lock")
            second.execute("INSERT INTO t VALUES (2)")

    with transaction(first):
        thread = threading.Thread(target=other)
        thread.start()
        # Give the second every chance to overtake; it must not.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and not events:
            time.sleep(0.01)
        events.append("first commits")
        first.execute("INSERT INTO t VALUES (1)")
    thread.join(timeout=10)
    assert events == ["first commits", "second has the lock"]
    assert second.execute("SELECT n FROM t ORDER BY n").fetchall() == [(1,), (2,)]


def test_the_schema_is_created_once_and_a_newer_one_is_refused(pg_cluster: Cluster) -> None:
    url = _database(pg_cluster, "schema")
    conn = pg_state.connect(url)
    assert state_schema_pg.version(conn) == 0
    state_schema_pg.create_or_check(conn, 7)
    state_schema_pg.create_or_check(pg_state.connect(url), 7)  # a second reporter: nothing
    assert conn.execute("SELECT version FROM state_version").fetchall() == [(7,)]
    conn.execute("UPDATE state_version SET version = 8")
    with pytest.raises(StoreError, match="newer than this program's"):
        state_schema_pg.create_or_check(conn, 7)


def test_no_server_is_one_error_naming_where(tmp_path: object) -> None:
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
        pg_state.connect(f"postgresql:///x?host={tmp_path}&connect_timeout=2")


def test_both_scripts_of_the_current_version_have_the_same_tables_and_columns(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    """One schema version number, a script per dialect: the PostgreSQL script may add only
    its version table and the explicit ``rowid`` SQLite gives every table by itself."""
    lite = state.connect(tmp_path / "state.sqlite")
    tables = [
        name for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    ]
    in_sqlite = {
        (table, column) for table in tables
        for (_, column, *_rest) in lite.execute(f"PRAGMA table_info({table})")
    }  # fmt: skip
    shared = state.connect(_database(pg_cluster, "parity"))
    in_postgresql = set(shared.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public'"
    ).fetchall())  # fmt: skip
    assert in_postgresql - in_sqlite == {("state_version", "version"), ("delivery", "rowid")}
    assert in_sqlite - in_postgresql == set()


def test_reporters_starting_at_once_create_the_tables_once(pg_cluster: Cluster) -> None:
    """Three first connections at once: one creates the tables, the others find them (a lock
    taken inside the transaction left the others blind to the new tables: "already exists")."""
    url = _database(pg_cluster, "at_once")
    errors: list[str] = []

    def start() -> None:
        try:
            state.connect(url).close()
        except StoreError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    conn = pg_state.connect(url)
    assert conn.execute("SELECT version FROM state_version").fetchall() == [(state.SCHEMA_VERSION,)]
