"""The fleet tests' PostgreSQL: the session's throwaway cluster (``pg_cluster`` of
tests/conftest.py, tests/rigs/postgres.py) with the roles of docs/fleet.md, created once, and a
fresh database per test, set up as the document says (its SQL blocks are run as written).

Without Debian's PostgreSQL server or psycopg the tests fail, saying what to install: a
skipped fleet test would hide a broken fleet.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from fleet_site import DOC_DATABASE, REPORTER, Fleet, doc_sql
from rigs.postgres import Cluster

from tlsrpt_reporter.report import fleet_source

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def fleet_cluster(pg_cluster: Cluster) -> Cluster:
    """The session's cluster with the roles of docs/fleet.md (roles belong to the cluster)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: pip install -e '.[test]' (the test extra "
                    "includes psycopg, as the postgresql extra does)")  # fmt: skip
    for statement in doc_sql("as the superuser"):
        if statement.startswith("CREATE ROLE"):
            pg_cluster.sql(statement)
    return pg_cluster


@pytest.fixture
def fleet(fleet_cluster: Cluster) -> Iterator[Fleet]:
    """A new fleet database: created as docs/fleet.md says, its tables made by the reporter's
    first read, ``fleet_host`` filled as the document says (mta1, mta2, mta3)."""
    name = f"fleet_{next(_numbers)}"
    for statement in doc_sql("as the superuser"):
        if not statement.startswith("CREATE ROLE"):
            fleet_cluster.sql(statement.replace(DOC_DATABASE, name))
    made = Fleet(fleet_cluster, name)
    assert fleet_source.days(made.url()) == []  # creates the tables
    for statement in doc_sql("as tlsrpt_reporter"):
        fleet_cluster.sql(statement, name, REPORTER)
    yield made
    if (fleet_cluster.data / "postmaster.pid").exists():
        fleet_cluster.sql(f'DROP DATABASE "{name}" WITH (FORCE)')
