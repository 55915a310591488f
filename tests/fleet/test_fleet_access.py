"""Who may do what in the fleet's database (the roles and grants of docs/fleet.md, as the
fixture ran them): a push role writes, sees and deletes only its own host's rows; passwords
never come from the configuration file; without psycopg the fleet says what to install."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg
import pytest
from fleet_site import Fleet, collect, mta_config, push_role, reporter_config, toml
from fleet_site import cli as fleet_cli
from rigs.postgres import Cluster

from tlsrpt_reporter import utc
from tlsrpt_reporter.cli import app
from tlsrpt_reporter.config import load as config
from tlsrpt_reporter.errors import ConfigError
from tlsrpt_reporter.wire.encode import datagram

DAY = utc.day(time.time() - 2 * 86400)


def _collected(tmp_path: Path, host: str) -> Path:
    db = tmp_path / f"{host}.sqlite"
    policy = {"policy-type": 9, "policy-domain": f"{host}.example", "t": 1, "f": 0}
    raw = datagram(f"{host}.example", [policy], "v=TLSRPTv1; rua=mailto:r@example.org")
    collect(db, DAY, [(raw, time.time() - 2 * 86400)])
    return db


def test_a_push_as_mta1s_role_under_mta2s_name_fails_and_writes_nothing(
    fleet: Fleet, tmp_path: Path
) -> None:
    db = _collected(tmp_path, "mta1")
    config_path = mta_config(tmp_path / "mta1.toml", db, fleet.conninfo(push_role("mta1")), "mta2")
    result = fleet_cli("push", config=config_path)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "role tlsrpt_push_mta1 may not push the rows of host mta2" in line
    assert "row-level security" in line
    assert "fleet_host must map mta2 to this role" in line
    assert fleet.query("SELECT count(*) FROM pushed_day") == [(0,)]


def test_a_push_role_sees_and_changes_only_its_own_hosts_rows(fleet: Fleet, tmp_path: Path) -> None:
    for host in ("mta1", "mta2"):
        db = _collected(tmp_path, host)
        path = mta_config(tmp_path / f"{host}.toml", db, fleet.conninfo(push_role(host)), host)
        assert fleet_cli("push", config=path).returncode == 0
    mta1 = push_role("mta1")
    assert fleet.query("SELECT DISTINCT host FROM fleet_policy", mta1) == [("mta1",)]
    fleet.cluster.sql("DELETE FROM fleet_policy; DELETE FROM pushed_day", fleet.dbname, mta1)
    # mta1 emptied what it sees: its own rows. mta2's are untouched.
    assert fleet.query("SELECT DISTINCT host FROM fleet_policy") == [("mta2",)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        fleet.cluster.sql(
            f"INSERT INTO fleet_counter VALUES ('{DAY}', 'mta2', 'sessions', 1000)",
            fleet.dbname, mta1,
        )  # fmt: skip
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        fleet.cluster.sql("INSERT INTO fleet_host VALUES ('mta9', 'tlsrpt_push_mta1')",
                          fleet.dbname, mta1)  # fmt: skip


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("reporter", "sources", ["postgresql://tlsrpt_reporter:s3cret@db.example/fleet"]),
        ("reporter", "sources", ["postgresql://db.example/fleet?user=r&password=s3cret"]),
        ("push", "database", "postgresql://tlsrpt_push_mta1:s3cret@db.example/fleet"),
        ("push", "database", "host=db.example dbname=fleet password=s3cret"),
        ("reporter", "db", "postgresql://tlsrpt_reporter:s3cret@db.example/fleet"),
    ],
)
def test_a_password_in_the_configuration_is_refused_with_the_fix_named(
    tmp_path: Path, section: str, key: str, value: object
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml({section: {key: value}}))
    with pytest.raises(ConfigError) as refused:
        config.load(path)
    message = str(refused.value)
    assert f"{section}.{key} contains a password" in message
    for fix in ("~/.pgpass", "PGPASSFILE", "service file"):
        assert fix in message
    assert "s3cret" not in message
    checked = fleet_cli("check-config", config=path)
    assert checked.returncode == 2
    assert "contains a password" in checked.stdout and "s3cret" not in checked.stdout


def test_expected_hosts_without_a_postgresql_source_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    path = reporter_config(tmp_path / "r.toml", [], tmp_path / "s.sqlite", expected_hosts=["a"])
    with pytest.raises(ConfigError, match="no postgresql:// entry"):
        config.load(path)


def test_without_psycopg_push_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = mta_config(tmp_path / "m.toml", tmp_path / "m.sqlite", "dbname=fleet", "mta1")
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    assert app.main(["--config", str(path), "push"]) == 1
    assert "install tlsrpt-rfc8460-reporter[postgresql]" in capsys.readouterr().err


def test_push_without_a_database_or_with_a_window_beyond_retention_is_a_usage_error(
    tmp_path: Path,
) -> None:
    unset = tmp_path / "unset.toml"
    unset.write_text(toml({"collectd": {"db": tmp_path / "m.sqlite"}}))
    result = fleet_cli("push", config=unset)
    assert result.returncode == 2
    assert "push.database is not set" in result.stderr
    beyond = tmp_path / "beyond.toml"
    beyond.write_text(toml({"collectd": {"retention_days": 3},
                            "push": {"database": "dbname=fleet", "days": 3}}))  # fmt: skip
    with pytest.raises(ConfigError, match=r"push.days \(3\) must be less than"):
        config.load(beyond)
    # Only with push set up: a collector-only host keeps any retention it had.
    beyond.write_text(toml({"collectd": {"retention_days": 2}}))
    assert config.load(beyond).push.database == ""


def test_a_push_before_the_reporter_made_the_tables_says_who_makes_them(
    fleet_cluster: Cluster, tmp_path: Path
) -> None:
    fleet_cluster.sql("CREATE DATABASE fleet_without_tables OWNER tlsrpt_reporter")
    try:
        db = _collected(tmp_path, "mta1")
        conninfo = fleet_cluster.conninfo("fleet_without_tables", push_role("mta1"))
        result = fleet_cli("push", config=mta_config(tmp_path / "m.toml", db, conninfo, "mta1"))
    finally:
        fleet_cluster.sql("DROP DATABASE fleet_without_tables WITH (FORCE)")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "has no fleet tables of schema version 1 yet" in line
    assert "run `tlsrpt-reporter status` on the reporter's host" in line
