"""How the collector meets its operator: socket handling, permissions, systemd, configuration."""

from __future__ import annotations

import asyncio
import grp
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiosqlite
import pytest
from support.collector import Collector, send_all, write_config
from support.datagrams import ok

from tlsrpt_collectd.daemon import Collector as Daemon
from tlsrpt_collectd.intake import SENDER_NOT_ALLOWED
from tlsrpt_collectd.receiver import Receiver
from tlsrpt_reporter.config.schema import CollectdConfig
from tlsrpt_reporter.store import collected as store

MakeCollector = Callable[..., Collector]


def collectd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run tlsrpt-collectd to completion."""
    return subprocess.run(
        [sys.executable, "-m", "tlsrpt_collectd.daemon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_a_stale_socket_file_is_replaced(make_collector: MakeCollector) -> None:
    c = make_collector()
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    leftover.bind(str(c.socket))
    leftover.close()  # the file stays: what a crashed collector leaves behind
    assert c.socket.exists()
    c.start()
    send_all(c.socket, [ok()])
    assert c.stop() == 0
    assert c.counters()["accepted"] == 1


def test_a_second_collector_on_a_live_socket_refuses_to_start(
    make_collector: MakeCollector,
) -> None:
    first = make_collector("first").start()
    second = make_collector("second", socket=first.socket)
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(30) == 1
    assert "another collector is already running" in second.log()
    # The first one is untouched and still counts.
    send_all(first.socket, [ok()])
    assert first.stop() == 0
    assert first.counters()["accepted"] == 1


def test_a_file_that_is_not_a_socket_is_never_replaced(make_collector: MakeCollector) -> None:
    c = make_collector()
    c.socket.write_text("precious")
    c.start(wait=False)
    assert c.proc is not None
    assert c.proc.wait(30) == 1
    assert "is not a socket" in c.log()
    assert c.socket.read_text() == "precious"


def test_socket_mode_and_group_decide_who_may_send(make_collector: MakeCollector) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test drops privileges with setpriv and must run as root (CI does)")
    group = grp.getgrnam("nogroup")
    c = make_collector(socket_mode="0660", socket_group="nogroup").start()
    st = c.socket.stat()
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_gid == group.gr_gid
    send = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
        f"s.sendto(sys.stdin.buffer.read(), {str(c.socket)!r})"
    )

    def as_nobody(gid: int) -> subprocess.CompletedProcess[bytes]:
        cmd = ["setpriv", "--reuid=nobody", f"--regid={gid}", "--clear-groups"]
        return subprocess.run(
            [*cmd, sys.executable, "-c", send], input=ok("member.example"), capture_output=True
        )

    allowed = as_nobody(group.gr_gid)
    assert allowed.returncode == 0, allowed.stderr
    refused = as_nobody(grp.getgrnam("daemon").gr_gid)
    assert refused.returncode != 0
    assert b"PermissionError" in refused.stderr
    assert c.stop() == 0
    assert [x["domain"] for x in c.export()] == ["member.example"]


def test_a_collector_running_unprivileged_cannot_bind_in_a_root_only_directory(
    shared_dir: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test drops privileges with setpriv and must run as root (CI does)")
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o755)
    dbdir = shared_dir / "db"
    dbdir.mkdir()
    os.chown(dbdir, 65534, 65534)
    cfg = shared_dir / "config.toml"
    write_config(cfg, socket=locked / "c.sock", db=dbdir / "c.sqlite")
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-m", "tlsrpt_collectd.daemon", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        f"cannot bind socket {locked / 'c.sock'}: permission denied for user nobody (uid 65534): "
        f"give that user access to {locked}" in result.stderr
    )


def test_socket_passed_by_systemd_is_used_and_left_in_place(make_collector: MakeCollector) -> None:
    c = make_collector()
    # What systemd does: bind the socket, pass it as fd 3 with LISTEN_FDS/LISTEN_PID, exec.
    activate = (
        "import os, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.bind(sys.argv[1])\n"
        "if s.fileno() != 3:\n"
        "    os.dup2(s.fileno(), 3)\n"
        "os.set_inheritable(3, True)\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
        "os.execv(sys.argv[2], sys.argv[2:])\n"
    )
    elsewhere = c.workdir / "unused.sock"
    text = c.config.read_text().replace(str(c.socket), str(elsewhere))
    c.config.write_text(text)
    c.start(prefix=(sys.executable, "-c", activate, str(c.socket)))
    assert not elsewhere.exists(), "with a socket from systemd, no other socket is bound"
    assert "(from systemd)" in c.log()
    send_all(c.socket, [ok("activated.example")])
    assert c.stop() == 0
    assert c.socket.exists(), "the socket belongs to systemd and stays"
    assert [x["domain"] for x in c.export()] == ["activated.example"]


def test_check_config_accepts_a_good_file(shared_dir: Path) -> None:
    good = shared_dir / "good.toml"
    write_config(good, socket="/run/x.sock", db=shared_dir / "c.sqlite", flush_interval=2,
                 socket_mode="0666")  # fmt: skip
    result = collectd("--check-config", "--config", str(good))
    assert result.returncode == 0
    assert "configuration OK" in result.stdout


@pytest.mark.parametrize(
    ("values", "says"),
    [
        pytest.param(
            {"flush_interval": "often"}, ["collectd.flush_interval", "'often'"], id="bad-key"
        ),
        pytest.param(None, ["does not exist"], id="missing-file"),
        pytest.param(
            {"socket_group": "no-such-group-here"}, ["no-such-group-here"], id="unknown-group"
        ),
    ],
)
def test_check_config_names_what_is_wrong(
    shared_dir: Path, values: dict[str, object] | None, says: list[str]
) -> None:
    """``values`` None: no file at all."""
    path = shared_dir / "collectd.toml"
    if values is not None:
        write_config(path, **values)
    result = collectd("--check-config", "--config", str(path))
    assert result.returncode == 2
    for text in says:
        assert text in result.stderr


def test_command_line_overrides_the_file_and_is_checked_too(shared_dir: Path) -> None:
    cfg = shared_dir / "c.toml"
    write_config(cfg, flush_interval=1)
    result = collectd("--config", str(cfg), "--flush-interval", "-3")
    assert result.returncode == 2
    assert "collectd.flush_interval" in result.stderr


def test_a_dead_receive_process_is_replaced_and_counting_goes_on(
    make_collector: MakeCollector,
) -> None:
    c = make_collector().start()
    assert c.proc is not None
    send_all(c.socket, [ok("one.example")])
    c.wait_for_counter("accepted", 1)
    child = int(Path(f"/proc/{c.proc.pid}/task/{c.proc.pid}/children").read_text().split()[0])
    os.kill(child, signal.SIGKILL)
    c.wait_for_log("ready: receiving", count=2)
    assert "the receive process exited" in c.log()
    send_all(c.socket, [ok("two.example")])
    assert c.stop() == 0
    assert sorted(x["domain"] for x in c.export()) == ["one.example", "two.example"]


def test_journald_lines_carry_a_priority_prefix(make_collector: MakeCollector) -> None:
    c = make_collector(max_datagram_size=1024)
    c.extra_env["JOURNAL_STREAM"] = "8:1234"
    c.start()
    send_all(c.socket, [b"garbage"])
    c.wait_for_log("rejected datagram")
    assert c.stop() == 0
    lines = c.log().splitlines()
    assert lines, "nothing logged"
    assert all(line[:3] in ("<6>", "<4>", "<3>", "<7>") for line in lines), lines
    assert any(line.startswith("<4>rejected datagram: not-json") for line in lines)


def test_counts_on_both_sides_of_utc_midnight_land_on_their_own_days(tmp_path: Path) -> None:
    """The receive process stamps each datagram; a batch never spans midnight, and one flush
    holding two days writes each count to its own day."""
    midnight = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    times = iter([midnight - 0.2, midnight - 0.1, midnight + 0.1, midnight + 0.2, midnight + 0.3])
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "s.sock"))
    read_fd, write_fd = os.pipe()
    receiver = Receiver(server, write_fd, 4096, 1 << 20, clock=lambda: next(times))
    for i in range(5):
        send_all(tmp_path / "s.sock", [ok(f"d{i}.example")])
    server.setblocking(False)
    receiver.drain()
    receiver.pack()
    receiver.flush(block=True)
    os.close(write_fd)
    frames = os.read(read_fd, 1 << 20)
    db = tmp_path / "c.sqlite"
    store.connect(db).close()
    daemon = Daemon(CollectdConfig(db=str(db)))
    daemon.intake.buf += frames
    daemon.intake.consume()

    async def flush() -> bool:
        async with aiosqlite.connect(db, isolation_level=None) as conn:
            return await daemon._flush(conn)

    assert asyncio.run(flush())
    conn = store.connect(db, create=False)
    before = [x["domain"] for x in store.iter_day(conn, "2025-12-31")]
    after = [x["domain"] for x in store.iter_day(conn, "2026-01-01")]
    assert before == ["d0.example", "d1.example"]
    assert after == ["d2.example", "d3.example", "d4.example"]
    assert store.day_counters(conn, "2025-12-31")["accepted"] == 2
    assert store.day_counters(conn, "2026-01-01")["accepted"] == 3
    conn.close()


def test_export_of_a_missing_database_fails_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "export", "--db",
         str(tmp_path / "none.sqlite"), "--day", "2026-01-01"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no collector database at" in result.stderr
    assert not (tmp_path / "none.sqlite").exists()
    bad_day = subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "export", "--day", "yesterday"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad_day.returncode == 2
    assert "is not a day like" in bad_day.stderr


def test_replay_sends_each_line_and_reports_sent_and_dropped(make_collector: MakeCollector) -> None:
    c = make_collector().start()
    lines = [ok(f"r{i}.example") for i in range(50)]
    replay_file = c.workdir / "sessions.jsonl"
    replay_file.write_bytes(b"\n".join(lines[:25]) + b"\n\n" + b"\n".join(lines[25:]) + b"\n")
    result = subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "replay", str(replay_file),
         "--socket", str(c.socket), "--wait", "--rate", "5000"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sent 50, dropped 0, skipped 1 blank lines"
    assert c.stop() == 0
    assert c.counters()["accepted"] == 50
    missing = subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "replay", str(replay_file),
         "--socket", str(c.workdir / "gone.sock")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "cannot send to collector socket" in missing.stderr


def test_replay_without_wait_counts_drops_when_nobody_reads(shared_dir: Path) -> None:
    path = shared_dir / "deaf.sock"
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(path))
    replay_file = shared_dir / "s.jsonl"
    replay_file.write_bytes(b"\n".join(ok(f"x{i}.example") for i in range(1000)) + b"\n")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "replay", str(replay_file),
         "--socket", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    deaf.close()
    assert result.returncode == 0
    sent, dropped = (int(w.rstrip(",")) for w in result.stdout.split()[1:4:2])
    assert sent + dropped == 1000
    assert dropped > 0, "an unread socket fills up; libtlsrpt-style sends drop"
    assert time.monotonic() - start < 30


# --- who may write: numeric socket_group, allowed_users, allowed_groups -------------------

_SEND = (
    "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
    "s.sendto(sys.stdin.buffer.read(), sys.argv[1])"
)


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test drops privileges with setpriv and must run as root (CI does)")


def send_as(path: Path, data: bytes, group: str, user: str = "nobody") -> None:
    """Send one datagram from a process running as ``user`` with primary group ``group``."""
    cmd = ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups"]
    result = subprocess.run(
        [*cmd, sys.executable, "-c", _SEND, str(path)], input=data, capture_output=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("socket_group", ["4242", 4242])
def test_a_numeric_socket_group_is_used_as_the_gid_without_a_group_entry(
    make_collector: MakeCollector, socket_group: object
) -> None:
    _require_root()
    with pytest.raises(KeyError):
        grp.getgrgid(4242)  # the point: no group of that id exists on this host
    c = make_collector(socket_mode="0660", socket_group=socket_group).start()
    st = c.socket.stat()
    assert st.st_gid == 4242
    assert stat.S_IMODE(st.st_mode) == 0o660
    send_as(c.socket, ok("gid4242.example"), group="4242")  # let in by the group bits
    assert c.stop() == 0
    assert [x["domain"] for x in c.export()] == ["gid4242.example"]


@pytest.mark.parametrize("allowed_users", [[0], ["root"]])
def test_allowed_users_let_in_only_their_datagrams_and_count_the_others(
    make_collector: MakeCollector, allowed_users: list[object]
) -> None:
    _require_root()
    c = make_collector(socket_mode="0666", allowed_users=allowed_users)
    prom = c.workdir / "collectd.prom"
    c.config.write_text(c.config.read_text() + f'metrics_file = "{prom}"\n')
    c.start()
    assert "only uids 0 or gids (none) may send" in c.log()
    send_all(c.socket, [ok("root.example")])
    # The socket's mode lets nobody write; only the uid check keeps the datagram out.
    send_as(c.socket, ok("nobody.example"), group="nogroup")
    c.wait_for_counter(f"rejected:{SENDER_NOT_ALLOWED}", 1)
    assert c.stop() == 0
    assert [x["domain"] for x in c.export()] == ["root.example"]
    counters = c.counters()
    assert (counters["received"], counters["accepted"], counters["rejected"]) == (2, 1, 1)
    assert "rejected datagram: sender-not-allowed: uid 65534, gid 65534" in c.log()
    assert f'tlsrpt_collectd_rejected_total{{reason="{SENDER_NOT_ALLOWED}"}} 1' in (
        prom.read_text()
    )


def test_allowed_groups_let_in_a_matching_gid_whatever_the_uid(
    make_collector: MakeCollector,
) -> None:
    _require_root()
    c = make_collector(socket_mode="0666", allowed_groups=["nogroup", "4242"]).start()
    send_as(c.socket, ok("nogroup.example"), group="nogroup")  # by name
    send_as(c.socket, ok("gid4242.example"), group="4242")  # by id, no group entry needed
    send_as(c.socket, ok("daemon.example"), group="daemon")
    send_all(c.socket, [ok("root.example")])  # root's uid 0 and gid 0: neither is listed
    c.wait_for_counter(f"rejected:{SENDER_NOT_ALLOWED}", 2)
    assert c.stop() == 0
    assert sorted(x["domain"] for x in c.export()) == ["gid4242.example", "nogroup.example"]
    assert c.counters()["accepted"] == 2


def test_without_allowed_senders_the_receiver_reads_as_before(
    make_collector: MakeCollector,
) -> None:
    """Unset keys: no SO_PASSCRED, no recvmsg; the receive process gets no ids to check."""
    c = make_collector().start()
    assert c.proc is not None
    child = int(Path(f"/proc/{c.proc.pid}/task/{c.proc.pid}/children").read_text().split()[0])
    args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[:-1]
    # SOCK_FD PIPE_FD MAX_SIZE MAX_BACKLOG SHUTDOWN_ON_STOP, and no ALLOWED_UIDS ALLOWED_GIDS
    assert args[-6] == b"tlsrpt_collectd.receiver", args
    assert "may send" not in c.log()
    send_all(c.socket, [ok()])
    assert c.stop() == 0
    assert c.counters()["accepted"] == 1


@pytest.mark.parametrize("key", ["allowed_users", "allowed_groups"])
def test_an_unknown_allowed_name_is_a_one_line_config_error_naming_the_key(
    shared_dir: Path, key: str
) -> None:
    cfg = shared_dir / "c.toml"
    write_config(cfg, socket=shared_dir / "c.sock", db=shared_dir / "c.sqlite")
    cfg.write_text(cfg.read_text() + f'{key} = [0, "no-such-name-here"]\n')
    for args in (("--check-config",), ()):
        result = collectd(*args, "--config", str(cfg))
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert f"collectd.{key}" in result.stderr
        assert "'no-such-name-here'" in result.stderr
    assert not (shared_dir / "c.sock").exists()
