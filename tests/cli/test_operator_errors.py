"""The errors an operator meets: one line naming the thing and the fix, and the exit code the
docs promise (docs/operating.md "When something is wrong"). CI runs as root, so the permission
cases drop privileges with setpriv."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rigs.smtpserver import SmtpServer
from support.collector import write_config
from support.site import Site

from tlsrpt_reporter.store import collected as store

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def run(*cmd: str, nobody: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if nobody and os.geteuid() != 0:
        pytest.fail("this test drops privileges with setpriv and must run as root (CI does)")
    prefix = NOBODY if nobody else []
    return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=timeout, cwd="/")


def reporter(*args: str, nobody: bool = False) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "tlsrpt_reporter.cli", *args, nobody=nobody)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_collector_without_permission_for_its_socket_directory(shared_dir: Path) -> None:
    work = shared_dir / "w"
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    locked = shared_dir / "root-only"
    locked.mkdir(mode=0o755)
    config = work / "c.toml"
    write_config(config, socket=locked / "run" / "c.sock", db=work / "c.sqlite")
    config.chmod(0o644)
    result = run(sys.executable, "-m", "tlsrpt_collectd.daemon", "--config", str(config),
                 nobody=True)  # fmt: skip
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert f"cannot create socket directory {locked / 'run'}" in lines[0]
    assert "permission denied for user nobody" in lines[0] and "give that user access" in lines[0]


def test_sender_without_permission_on_the_socket(shared_dir: Path) -> None:
    import socket

    path = shared_dir / "s.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    path.chmod(0o600)
    line = shared_dir / "one.jsonl"
    line.write_text('{"dpv": "1"}\n')
    line.chmod(0o644)
    try:
        result = reporter("replay", str(line), "--socket", str(path), nobody=True)
    finally:
        sock.close()
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"tlsrpt-reporter: cannot send to collector socket {path}: the socket's mode and group "
        "do not let this user write: add the user to collectd.socket_group, or widen "
        "collectd.socket_mode"
    ]


def test_database_that_cannot_be_read(shared_dir: Path) -> None:
    db = shared_dir / "c.sqlite"
    store.connect(db).close()
    db.chmod(0o600)
    result = reporter("export", "--db", str(db), "--day", "2026-03-01", nobody=True)
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"tlsrpt-reporter: cannot open database {db}: ")
    assert "permission denied for user nobody" in line


def test_database_locked_by_another_writer(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    store.connect(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # like a stuck process holding the write lock
    log = tmp_path / "s.jsonl"
    log.write_text('{"dpv": "1","d": "a.example","policies":[{"policy-type":9,"t":0,"f":0}]}\n')
    try:
        result = reporter("replay", str(log), "--into-db", str(db))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert f"cannot write to database {db}" in line
    assert "another process has held a write lock" in line and f"fuser {db}" in line


def test_unreadable_dkim_key(site: Site, shared_dir: Path) -> None:
    # the site's files, where nobody can reach the config but not read the key
    key = shared_dir / "dkim.pem"
    key.write_bytes(next(site.tmp.glob("*.pem")).read_bytes())
    key.chmod(0o600)
    config = shared_dir / "config.toml"
    config.write_text(re.sub(r'key = "[^"]*"', f'key = "{key}"', site.config.read_text()))
    config.chmod(0o644)
    result = reporter("check-config", "--config", str(config), nobody=True)
    assert result.returncode == 2
    assert f"DKIM key file {key}" in result.stdout
    assert "cannot be read by this user: make it readable by the reporter's user" in result.stdout


def test_relay_that_refuses_connections(site: Site) -> None:
    text = site.config.read_text()
    closed = site.tmp / "closed.toml"
    closed.write_text(re.sub(r'relay = "127.0.0.1:\d+"', 'relay = "127.0.0.1:1"', text))
    result = site.cli("send", "--now", config=closed)
    assert result.returncode == 1
    errors = [x for x in error_lines(result.stderr) if x.startswith("tlsrpt-reporter: error:")]
    assert len(errors) == 1, result.stderr
    assert "the mail relay 127.0.0.1:1 cannot be reached" in errors[0]
    assert "start it, or fix reporter.mail.relay" in errors[0]


def test_relay_that_refuses_to_relay(site: Site) -> None:
    with SmtpServer(rcpt_reply="554 5.7.1 Relay access denied") as strict:
        text = site.config.read_text()
        config = site.tmp / "strict.toml"
        config.write_text(
            re.sub(r'relay = "127.0.0.1:\d+"', f'relay = "127.0.0.1:{strict.port}"', text)
        )
        result = site.cli("send", "--now", config=config)
    assert result.returncode == 1
    errors = [x for x in error_lines(result.stderr) if x.startswith("tlsrpt-reporter: error:")]
    assert len(errors) == 1, result.stderr
    assert f"the mail relay 127.0.0.1:{strict.port} did not take a report" in errors[0]
    assert "Relay access denied" in errors[0] and "relay_username" in errors[0]


def test_dns_down(site: Site) -> None:
    text = site.config.read_text()
    down = site.tmp / "dns-down.toml"
    down.write_text(re.sub(r"\nport = \d+", "\nport = 9", text))  # nothing answers there
    result = site.cli("send", "--now", config=down)
    assert result.returncode == 1
    errors = [x for x in error_lines(result.stderr) if x.startswith("tlsrpt-reporter: error:")]
    assert len(errors) == 1, result.stderr
    assert "DNS is unreachable" in errors[0] and "check [dns] nameservers" in errors[0]
    # the reports that needed DNS are kept for later, not dropped
    assert site.report_status()["dns.example"][0] == "pending"


def test_a_healthy_send_exits_0(site: Site) -> None:
    result = site.cli("send", "--now")
    assert result.returncode == 0, result.stderr
    assert "tlsrpt-reporter: error:" not in result.stderr
