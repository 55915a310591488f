"""A throwaway PostgreSQL cluster for the fleet tests: Debian's server, a temporary directory,
a Unix socket, and nothing else.

Debian's ``postgresql`` package installs the server under ``/usr/lib/postgresql/VERSION/bin``
(not on ``PATH``); the newest version found there is used, whichever it is. Its own cluster
(``/var/lib/postgresql``, started by the package) is never touched: this one has its data
directory and socket directory in a ``mkdtemp`` directory, ``listen_addresses = ''`` (no TCP
at all), trust authentication on the socket (every role logs in by name, no password), and
``fsync = off`` (a test's data need not survive a power cut).

The server refuses to run as root, and CI runs as root: the cluster then runs as Debian's
``postgres`` system user (the package creates it), else as ``nobody``, through ``setpriv``;
the temporary directory belongs to that user. As any other user it runs as that user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
PORT = 5432  # only part of the socket's file name: no TCP port is opened
_TOOLS = ("initdb", "pg_ctl", "postgres")


class PostgresMissing(RuntimeError):
    """Debian's PostgreSQL server is not installed."""


def server_bin() -> Path:
    """The ``bin`` directory of the newest PostgreSQL server installed the Debian way."""
    found = []
    for directory in SERVER_ROOT.glob("*/bin") if SERVER_ROOT.is_dir() else ():
        version = directory.parent.name
        if re.fullmatch(r"\d+(\.\d+)?", version) and all(
            (directory / tool).is_file() for tool in _TOOLS
        ):
            found.append((tuple(int(part) for part in version.split(".")), directory))
    if not found:
        raise PostgresMissing(
            f"PostgreSQL is not installed (no {SERVER_ROOT}/VERSION/bin with "
            f"{', '.join(_TOOLS)}): apt-get install postgresql (.ci/run does)"
        )
    return max(found)[1]


@dataclass(frozen=True)
class RunAs:
    """Who runs the server: a user's name, uid and gid."""

    name: str
    uid: int
    gid: int

    @classmethod
    def choose(cls) -> RunAs:
        """Ourselves, or as root ``postgres`` (else ``nobody``): the server refuses root."""
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
        else:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                entry = pwd.getpwnam("nobody")
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    def argv(self, *command: str | Path) -> list[str]:
        """``command`` run as this user (through setpriv when we are root)."""
        words = [str(word) for word in command]
        if os.geteuid() != 0:
            return words
        return [
            "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
            "--reset-env", "--", *words,
        ]  # fmt: skip


class Cluster:
    """One PostgreSQL cluster in a temporary directory; ``start`` and ``stop`` as often as a
    test needs (the data stays until :meth:`remove`)."""

    def __init__(self) -> None:
        """Choose the server and the user; nothing is created before :meth:`start`."""
        self.bin = server_bin()
        self.user = RunAs.choose()
        self.base = Path(tempfile.mkdtemp(prefix="tlsrpt-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.log = self.base / "server.log"
        # The client (root, or the test's own user) reaches the socket; the rest is the user's.
        self.base.chmod(0o755)
        self.sockets.mkdir(mode=0o755)
        os.chown(self.base, self.user.uid, self.user.gid)
        os.chown(self.sockets, self.user.uid, self.user.gid)
        self.version = self.bin.parent.name

    def _run(self, *command: str | Path, timeout: float = 120.0) -> str:
        result = subprocess.run(
            self.user.argv(*command), capture_output=True, text=True, timeout=timeout,
            cwd=self.base,
        )  # fmt: skip
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{log}"
            )
        return result.stdout

    def start(self) -> None:
        """Create the cluster on first use, then start the server and wait until it answers."""
        if not (self.data / "PG_VERSION").exists():
            self._run(
                self.bin / "initdb", "-D", self.data, "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    "listen_addresses = ''\n"
                    f"unix_socket_directories = '{self.sockets}'\n"
                    f"port = {PORT}\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 50\n"
                )
        self._run(self.bin / "pg_ctl", "start", "-D", self.data, "-l", self.log, "-w", "-t", "60")

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended); the data stays."""
        if (self.data / "postmaster.pid").exists():
            self._run(self.bin / "pg_ctl", "stop", "-D", self.data, "-m", "fast", "-w")

    def remove(self) -> None:
        """Stop the server and delete everything."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def conninfo(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """A libpq conninfo for ``user`` on ``dbname`` through the socket."""
        return f"host={self.sockets} port={PORT} dbname={dbname} user={user}"

    def url(self, dbname: str, user: str) -> str:
        """The same as a ``postgresql://`` URL (the socket directory percent-encoded)."""
        host = str(self.sockets).replace("/", "%2F")
        return f"postgresql:///{dbname}?host={host}&port={PORT}&user={user}"

    def sql(self, statements: str, dbname: str = "postgres", user: str = SUPERUSER) -> None:
        """Run SQL statements (autocommit) as ``user``; psycopg's synchronous API."""
        import psycopg  # a test extra: imported when the cluster is used

        with psycopg.connect(self.conninfo(dbname, user), autocommit=True) as conn:
            conn.execute(statements.encode())

    def query(self, sql: str, dbname: str, user: str = SUPERUSER) -> list[tuple[object, ...]]:
        """The rows of one query."""
        import psycopg

        with psycopg.connect(self.conninfo(dbname, user), autocommit=True) as conn:
            return list(conn.execute(sql.encode()).fetchall())

    def create_database(self, name: str, owner: str = SUPERUSER) -> None:
        """A new, empty database owned by ``owner``."""
        self.sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
