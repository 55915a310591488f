"""The fixtures every test folder shares: collectors on real sockets, a whole reporter site.

Helpers that are not fixtures live in ``support/``; the real servers in ``rigs/``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rigs.postgres import SUPERUSER, Cluster
from support.collector import Collector, make_traversable, write_config
from support.site import Site, make_site


@pytest.fixture(scope="session", autouse=True)
def _checkout_reachable_by_other_users() -> None:
    """As root, the permission tests run the project as nobody, who must reach the checkout
    (its editable install points there) to import it at all."""
    if os.geteuid() == 0:
        make_traversable(Path(__file__).resolve().parent.parent)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A temporary directory other users can traverse: nobody, postfix, Debian-exim.

    Not below pytest's ``/tmp/pytest-of-root``: that is 0700, and any other pytest run on the
    machine sets it back to 0700 while this one runs, which once locked Postfix's master out of
    its work directory ("open lock file ... Permission denied").
    """
    path = Path(tempfile.mkdtemp(prefix="tlsrpt-test-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture
def make_collector(shared_dir: Path) -> Iterator[Callable[..., Collector]]:
    """Factory of configured (not yet started) collectors; all are killed at teardown."""
    made: list[Collector] = []

    def make(name: str = "c", **cfg: object) -> Collector:
        work = shared_dir / name
        work.mkdir()
        values: dict[str, object] = {
            "socket": work / "collectd.sock",
            "db": work / "collectd.sqlite",
            "socket_mode": "0600",
            "flush_interval": 0.2,
        }
        values.update(cfg)
        config = work / "config.toml"
        write_config(config, **values)
        collector = Collector(
            workdir=work,
            config=config,
            socket=Path(str(values["socket"])),
            db=Path(str(values["db"])),
            logfile=work / "collectd.log",
        )
        made.append(collector)
        return collector

    yield make
    for collector in made:
        if collector.proc is not None and collector.proc.poll() is None:
            collector.proc.kill()
            collector.proc.wait()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A reporter site: SMTP, HTTPS and DNS test servers, a collected day, a configuration."""
    yield from make_site(tmp_path)


@pytest.fixture
def any_site(tmp_path: Path, state_location: str) -> Iterator[Site]:
    """:func:`site` once with each state database: SQLite, and a PostgreSQL database of the
    session's throwaway server (the same test, both backends: issue 16)."""
    url = state_location if state_location.startswith("postgresql://") else ""
    yield from make_site(tmp_path, url)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL server for the whole run (rigs/postgres.py); every test that
    uses it gets a database of its own (:func:`state_location`, the fleet fixtures)."""
    cluster = Cluster()
    cluster.start()
    yield cluster
    cluster.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``reporter.db`` for a test that runs against both state databases: a SQLite file, or
    a fresh database of the session's PostgreSQL server as a ``postgresql://`` URL."""
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite")
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    name = f"state_{secrets.token_hex(6)}"
    cluster.create_database(name)
    return cluster.url(name, SUPERUSER)
