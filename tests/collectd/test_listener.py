"""``tlsrpt_collectd.listener`` directly, on real Unix datagram sockets: binding with a mode and
group, what it replaces and what it refuses to touch, the path length limit, groups, systemd
socket activation (fd 3 is faked only inside a child process), and resolving allowed senders."""

from __future__ import annotations

import grp
import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.audit import watching

from tlsrpt_collectd import listener
from tlsrpt_collectd.receiver import Senders
from tlsrpt_reporter.config.schema import CollectdConfig
from tlsrpt_reporter.errors import CollectorError, ConfigError

ROOT_GROUP = grp.getgrgid(0).gr_name
ROOT_USER = pwd.getpwuid(0).pw_name
UNKNOWN = "tlsrpt-test-no-such-name"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory in /tmp: socket paths must fit in 107 bytes, tmp_path may not."""
    with tempfile.TemporaryDirectory(prefix="tlsrpt-l-", dir="/tmp") as d:
        yield Path(d)


def send_and_receive(listening: socket.socket, path: Path, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        client.sendto(payload, str(path))
    listening.settimeout(5)
    return listening.recv(65536)


def stale_socket(path: Path) -> None:
    """A socket file nobody listens on: what a collector that was killed leaves behind."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(path))
    assert stat.S_ISSOCK(path.lstat().st_mode)


# --- bind -------------------------------------------------------------------------------------


def test_bind_creates_a_working_socket_with_the_requested_mode(short_dir: Path) -> None:
    path = short_dir / "run" / "tlsrpt.sock"  # the directory is created too
    bound = listener.bind(str(path), 0o620)
    try:
        st = path.lstat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o620
        assert bound.path == path
        assert bound.sock.type == socket.SOCK_DGRAM
        assert send_and_receive(bound.sock, path, b"datagram") == b"datagram"
    finally:
        bound.close()
    assert not path.exists()  # close() removes the file it created


def test_bind_gives_the_socket_a_numeric_group_without_looking_it_up(short_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's group to an arbitrary gid needs root")
    gid = 54321
    with pytest.raises(KeyError):
        grp.getgrgid(gid)  # a gid with no entry here, as a chrooted Postfix may have
    path = short_dir / "s.sock"
    bound = listener.bind(str(path), 0o660, str(gid))
    try:
        st = path.lstat()
        assert st.st_gid == gid
        assert stat.S_IMODE(st.st_mode) == 0o660
    finally:
        bound.close()


def test_bind_gives_the_socket_a_named_group(short_dir: Path) -> None:
    path = short_dir / "s.sock"
    own_group = grp.getgrgid(os.getegid()).gr_name  # allowed without privilege
    bound = listener.bind(str(path), 0o660, own_group)
    try:
        assert path.lstat().st_gid == os.getegid()
    finally:
        bound.close()


def test_bind_replaces_a_stale_socket_file_nobody_listens_on(short_dir: Path) -> None:
    path = short_dir / "s.sock"
    stale_socket(path)
    path.chmod(0o755)
    bound = listener.bind(str(path), 0o600)  # binding over the old file would fail
    try:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert send_and_receive(bound.sock, path, b"after restart") == b"after restart"
    finally:
        bound.close()


def test_bind_refuses_to_take_over_a_socket_a_live_listener_answers_on(short_dir: Path) -> None:
    path = short_dir / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as running:
        running.bind(str(path))
        inode = path.lstat().st_ino
        with pytest.raises(CollectorError, match="another collector is already running on"):
            listener.bind(str(path), 0o600)
        # The running collector keeps its socket file and still gets its datagrams.
        assert path.lstat().st_ino == inode
        assert send_and_receive(running, path, b"still mine") == b"still mine"


def test_bind_refuses_to_replace_a_regular_file(short_dir: Path) -> None:
    path = short_dir / "s.sock"
    path.write_text("someone's data")
    with pytest.raises(CollectorError, match="exists and is not a socket: refusing to replace"):
        listener.bind(str(path), 0o600)
    assert path.read_text() == "someone's data"


def test_bind_refuses_to_replace_a_symlink_even_to_a_stale_socket(short_dir: Path) -> None:
    target = short_dir / "target.sock"
    stale_socket(target)
    link = short_dir / "s.sock"
    link.symlink_to(target)
    with pytest.raises(CollectorError, match="is not a socket"):
        listener.bind(str(link), 0o600)
    assert link.is_symlink()
    assert stat.S_ISSOCK(target.lstat().st_mode)


def test_bind_refuses_to_replace_a_directory(short_dir: Path) -> None:
    path = short_dir / "s.sock"
    path.mkdir()
    (path / "keep").write_text("x")
    with pytest.raises(CollectorError, match="is not a socket"):
        listener.bind(str(path), 0o600)
    assert (path / "keep").read_text() == "x"


def test_bind_takes_a_path_of_107_bytes_and_refuses_108(short_dir: Path) -> None:
    room = 107 - len(os.fsencode(str(short_dir))) - 1
    longest = short_dir / ("s" * room)
    assert len(os.fsencode(str(longest))) == 107
    bound = listener.bind(str(longest), 0o600)
    try:
        assert stat.S_ISSOCK(longest.lstat().st_mode)
    finally:
        bound.close()
    too_long = short_dir / ("s" * (room + 1))
    with pytest.raises(CollectorError, match="is longer than 107 bytes: choose a shorter path"):
        listener.bind(str(too_long), 0o600)
    assert not too_long.exists()


def test_bind_counts_the_path_length_in_bytes_not_characters(short_dir: Path) -> None:
    room = 107 - len(os.fsencode(str(short_dir))) - 1
    path = short_dir / ("é" * (room // 2 + 1))  # 2 bytes each: fewer than 107 characters
    assert len(str(path)) <= 107 < len(os.fsencode(str(path)))
    with pytest.raises(CollectorError, match="longer than 107 bytes"):
        listener.bind(str(path), 0o600)


def test_bind_with_an_unknown_group_creates_nothing(short_dir: Path) -> None:
    path = short_dir / "sub" / "s.sock"
    with pytest.raises(CollectorError, match=f"socket_group '{UNKNOWN}' does not exist"):
        listener.bind(str(path), 0o660, UNKNOWN)
    assert not (short_dir / "sub").exists()


def test_bind_reports_a_directory_it_cannot_create() -> None:
    where = f"/proc/tlsrpt-test-{os.urandom(4).hex()}"  # no one can make a directory there
    with pytest.raises(CollectorError, match=f"cannot create socket directory {where}"):
        listener.bind(f"{where}/s.sock", 0o600)


def test_the_socket_path_appears_only_with_its_final_mode_and_group(short_dir: Path) -> None:
    """At every step of bind() (each audit event), whatever is at the path is already the socket
    with its final mode and group; the bind itself happens in a private 0700 directory."""
    path = short_dir / "s.sock"
    gid = 54321 if os.geteuid() == 0 else os.getegid()  # any gid needs root
    seen: list[tuple[str, bool, int, int]] = []
    bound_at: list[tuple[str, int, int]] = []

    def watch(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.bind" and args[0].family == socket.AF_UNIX:
            where = Path(args[1])
            st = where.parent.lstat()
            bound_at.append((str(where), stat.S_IMODE(st.st_mode), st.st_uid))
        try:
            st = path.lstat()
        except FileNotFoundError:
            return
        seen.append((event, stat.S_ISSOCK(st.st_mode), stat.S_IMODE(st.st_mode), st.st_gid))

    with watching(watch):
        bound = listener.bind(str(path), 0o620, str(gid))
    try:
        assert len(bound_at) == 1
        where, dir_mode, dir_owner = bound_at[0]
        assert where != str(path) and Path(where).parent.parent == short_dir
        assert (dir_mode, dir_owner) == (0o700, os.geteuid())
        assert seen, "the path never appeared while bind() ran"
        assert {(is_socket, mode, g) for _, is_socket, mode, g in seen} == {(True, 0o620, gid)}
        assert sorted(p.name for p in short_dir.iterdir()) == ["s.sock"]  # no private dir left
        assert send_and_receive(bound.sock, path, b"reachable") == b"reachable"
    finally:
        bound.close()


def test_a_link_swapped_in_while_binding_is_never_followed(short_dir: Path) -> None:
    """An attacker who can write to the socket's directory puts a link to another file at the
    path at the worst moment, just before the mode is set: that file keeps its mode, and the
    collector refuses to start rather than replace what appeared."""
    path = short_dir / "s.sock"
    victim = short_dir / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)

    def attacker(event: str, args: tuple[Any, ...]) -> None:
        if event in ("os.chmod", "os.chown") and not path.is_symlink():
            path.unlink(missing_ok=True)
            path.symlink_to(victim)

    with watching(attacker), pytest.raises(CollectorError) as caught:
        listener.bind(str(path), 0o666)
    assert f"{path} appeared while the collector was binding" in str(caught.value)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert path.is_symlink()  # not ours: left for the operator to look at
    assert sorted(p.name for p in short_dir.iterdir()) == ["s.sock", "victim"]


def test_a_socket_not_yet_in_place_is_not_reachable_by_another_user(short_dir: Path) -> None:
    """Seen by nobody (another user, as an MTA would be) while bind() runs: at every step the
    socket's path is either absent or refuses a 0600 socket's non-owner."""
    if os.geteuid() != 0:
        pytest.skip("switching to the user nobody needs root")
    short_dir.chmod(0o755)
    path = short_dir / "s.sock"
    answers: list[str] = []

    def probe(event: str, args: tuple[Any, ...]) -> None:
        if event in ("socket.bind", "os.chmod", "os.chown", "os.link", "os.remove", "os.rmdir"):
            answers.append(_send_as_nobody(path))

    with watching(probe):
        bound = listener.bind(str(path), 0o600)
    try:
        answers.append(_send_as_nobody(path))
        assert set(answers) <= {"FileNotFoundError", "PermissionError"}, answers
        assert answers[-1] == "PermissionError"
    finally:
        bound.close()


def _send_as_nobody(path: Path) -> str:
    script = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "try:\n    s.sendto(b'x', sys.argv[1]); print('sent')\n"
        "except OSError as e:\n    print(type(e).__name__)\n"
    )
    done = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-c", script, str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_bind_refuses_a_directory_too_long_for_the_private_bind(short_dir: Path) -> None:
    # The final path fits in 107 bytes, the private one beside it (12 bytes more) does not.
    deep = short_dir / ("d" * (100 - len(os.fsencode(str(short_dir))) - 1))
    path = deep / "s"
    assert len(os.fsencode(str(path))) == 102
    with pytest.raises(CollectorError, match=f"socket directory {deep} is too long"):
        listener.bind(str(path), 0o600)
    assert list(deep.iterdir()) == []


# --- check_group ------------------------------------------------------------------------------


def test_check_group_looks_up_a_group_name() -> None:
    assert listener.check_group(ROOT_GROUP) == 0


def test_check_group_takes_digits_as_the_gid_without_a_lookup() -> None:
    assert listener.check_group("54321") == 54321
    assert listener.check_group("0") == 0


def test_check_group_refuses_an_unknown_name_and_non_ascii_digits() -> None:
    with pytest.raises(CollectorError, match=r"fix collectd\.socket_group"):
        listener.check_group(UNKNOWN)
    with pytest.raises(CollectorError, match="does not exist"):
        listener.check_group("\u0661\u0662")  # Arabic-Indic digits: not a gid


# --- from_systemd -----------------------------------------------------------------------------


def test_from_systemd_is_none_without_listen_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        monkeypatch.delenv(name, raising=False)
    assert listener.from_systemd() is None


def test_from_systemd_ignores_sockets_passed_to_another_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getppid()))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert listener.from_systemd() is None
    # Not ours: left for the process they were meant for.
    assert os.environ["LISTEN_PID"] == str(os.getppid())
    assert os.environ["LISTEN_FDS"] == "1"


def test_from_systemd_with_no_fds_for_this_process_is_none_and_clears_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "0")
    monkeypatch.setenv("LISTEN_FDNAMES", "")
    assert listener.from_systemd() is None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        assert name not in os.environ  # children must not think the socket is theirs


def test_from_systemd_with_a_bad_fd_count_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "one")
    assert listener.from_systemd() is None


# The child puts a socket on fd 3 and says it came from systemd, as systemd would.
ACTIVATION_SCRIPT = """
import json, os, socket, sys
from tlsrpt_collectd import listener
from tlsrpt_reporter.errors import CollectorError
kind, count = sys.argv[1], sys.argv[2]
family, type_ = {"dgram": (socket.AF_UNIX, socket.SOCK_DGRAM),
                 "stream": (socket.AF_UNIX, socket.SOCK_STREAM),
                 "udp": (socket.AF_INET, socket.SOCK_DGRAM)}[kind]
passed = socket.socket(family, type_)
if sys.argv[3]:
    passed.bind("\\0" + sys.argv[3])
fd = passed.detach()
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)  # as systemd passes it
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=count, LISTEN_FDNAMES="tlsrpt")
out = {}
try:
    sock = listener.from_systemd()
except CollectorError as exc:
    out["error"] = str(exc)
else:
    out["fileno"] = sock.fileno()
    out["inheritable"] = os.get_inheritable(sock.fileno())
    sock.settimeout(5)
    out["received"] = sock.recv(100).decode()
out["env"] = [n for n in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if n in os.environ]
print(json.dumps(out))
"""


def activate(kind: str, count: str, name: str = "") -> dict[str, object]:
    child = subprocess.Popen(
        [sys.executable, "-c", ACTIVATION_SCRIPT, kind, count, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if name:
        # Send once the child has bound the name (a datagram waits in its queue until read).
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            for _ in range(500):
                try:
                    client.sendto(b"hello over fd 3", "\0" + name)
                    break
                except (ConnectionRefusedError, FileNotFoundError):
                    if child.poll() is not None:
                        break
                    time.sleep(0.02)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    result: dict[str, object] = json.loads(stdout)
    return result


def test_from_systemd_takes_the_datagram_socket_on_fd_3() -> None:
    name = f"tlsrpt-test-activation-{os.getpid()}-{os.urandom(4).hex()}"
    result = activate("dgram", "1", name)
    assert result == {
        "fileno": 3,
        "inheritable": False,  # not leaked to the receive process or anything else
        "received": "hello over fd 3",
        "env": [],
    }


@pytest.mark.parametrize(
    ("kind", "count", "message"),
    [
        ("dgram", "2", "systemd passed 2 sockets; the collector takes exactly one"),
        ("stream", "1", "is not a Unix datagram socket: use ListenDatagram="),
        ("udp", "1", "is not a Unix datagram socket"),
    ],
)
def test_from_systemd_refuses_what_the_collector_cannot_use(
    kind: str, count: str, message: str
) -> None:
    result = activate(kind, count)
    assert message in str(result["error"])
    assert result["env"] == []


# --- resolve_senders --------------------------------------------------------------------------


def test_resolve_senders_is_none_when_nobody_is_listed() -> None:
    assert listener.resolve_senders(CollectdConfig()) is None


def test_resolve_senders_turns_names_and_ids_into_senders() -> None:
    cfg = CollectdConfig(allowed_users=(ROOT_USER, 1234), allowed_groups=(ROOT_GROUP, 4321, 0))
    assert listener.resolve_senders(cfg) == Senders(
        uids=frozenset({0, 1234}), gids=frozenset({0, 4321})
    )


def test_resolve_senders_with_only_groups_allows_no_user_by_uid() -> None:
    cfg = CollectdConfig(allowed_groups=(ROOT_GROUP,))
    assert listener.resolve_senders(cfg) == Senders(uids=frozenset(), gids=frozenset({0}))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            CollectdConfig(allowed_users=(ROOT_USER, UNKNOWN)),
            f"collectd.allowed_users: there is no user '{UNKNOWN}' on this host",
        ),
        (
            CollectdConfig(allowed_groups=(UNKNOWN,)),
            f"collectd.allowed_groups: there is no group '{UNKNOWN}' on this host",
        ),
    ],
)
def test_resolve_senders_names_the_key_of_an_unknown_name(
    cfg: CollectdConfig, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        listener.resolve_senders(cfg)
    assert message in str(caught.value)
    assert "or give the numeric id" in str(caught.value)


def test_a_socket_path_below_a_regular_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(CollectorError, match="cannot use socket path"):
        listener.bind(str(blocker / "collectd.sock"), 0o660)
