"""The collector's Unix datagram socket: bind it safely, or take it from systemd; and who may
write to it.

Binding refuses to steal the path from a live collector, replaces a stale socket file, never
deletes anything that is not a socket, and never lets the socket be reached before its group and
mode are in place.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import socket
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tlsrpt_collectd.receiver import Senders
from tlsrpt_reporter.config.schema import CollectdConfig
from tlsrpt_reporter.errors import CollectorError, ConfigError, os_fix

_SD_LISTEN_FDS_START = 3
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes including the terminating NUL


@dataclass
class Listener:
    """A bound socket; ``path`` is set when we created the file and must remove it on exit."""

    sock: socket.socket
    path: Path | None

    def close(self) -> None:
        """Close the socket and remove the file this process created."""
        self.sock.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def from_systemd() -> socket.socket | None:
    """The datagram socket passed by systemd socket activation, if any (sd_listen_fds(3))."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count < 1:
        return None
    if count > 1:
        raise CollectorError(
            f"systemd passed {count} sockets; the collector takes exactly one: "
            "check the .socket unit"
        )
    try:
        sock = socket.socket(fileno=_SD_LISTEN_FDS_START)
    except OSError as exc:
        raise CollectorError(
            f"LISTEN_FDS says systemd passed a socket, but fd 3 is not one ({exc.strerror})"
        ) from None
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_DGRAM:
        raise CollectorError(
            "the socket passed by systemd is not a Unix datagram socket: "
            "use ListenDatagram= in the .socket unit"
        )
    os.set_inheritable(sock.fileno(), False)
    return sock


def bind(path: str, mode: int, group: str = "") -> Listener:
    """Bind a SOCK_DGRAM socket at ``path`` with ``mode`` and optional ``group``.

    The socket is bound in a private directory (0700) beside ``path``, given its group and mode
    there, and only then linked to ``path``: it never appears with other permissions than its
    own, and chown/chmod never act on a name another user could swap for a link. Linking, unlike
    renaming, fails on a name that appeared meanwhile instead of replacing it.

    Raises CollectorError when a live collector answers there, when something other than a
    socket is in the way, or when the path cannot be bound.
    """
    target = Path(path)
    if len(os.fsencode(path)) > _MAX_UNIX_PATH:
        raise CollectorError(
            f"socket path {path} is longer than {_MAX_UNIX_PATH} bytes: choose a shorter path"
        )
    gid = check_group(group) if group else None
    _clear_stale(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CollectorError(
            f"cannot create socket directory {target.parent}: {os_fix(exc, target.parent)}"
        ) from None
    try:
        private = Path(tempfile.mkdtemp(prefix=".", dir=target.parent))
    except OSError as exc:  # binding needs the same write access to the directory
        raise CollectorError(f"cannot bind socket {path}: {os_fix(exc, target.parent)}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        _bind_privately(sock, private / "s", target, mode, gid)
    except CollectorError:
        sock.close()
        raise
    finally:
        with contextlib.suppress(OSError):
            (private / "s").unlink(missing_ok=True)
            private.rmdir()
    return Listener(sock=sock, path=target)


def _bind_privately(
    sock: socket.socket, hidden: Path, target: Path, mode: int, gid: int | None
) -> None:
    if len(os.fsencode(str(hidden))) > _MAX_UNIX_PATH:
        raise CollectorError(
            f"socket directory {target.parent} is too long: the collector binds in a private "
            f"directory inside it first ({hidden}, over {_MAX_UNIX_PATH} bytes); choose a "
            "shorter path"
        )
    try:
        sock.bind(str(hidden))
    except OSError as exc:
        raise CollectorError(f"cannot bind socket {target}: {os_fix(exc, target.parent)}") from None
    try:
        if gid is not None:
            os.chown(hidden, -1, gid)
        os.chmod(hidden, mode)
    except OSError as exc:
        raise CollectorError(
            f"cannot set group/mode on socket {target}: {os_fix(exc, target)} (changing the "
            "group needs root or membership of collectd.socket_group)"
        ) from None
    try:
        os.link(hidden, target)
    except FileExistsError:
        raise CollectorError(
            f"{target} appeared while the collector was binding: stop whatever created it "
            "(another collector starting?) or remove it, then start again"
        ) from None
    except OSError as exc:
        raise CollectorError(f"cannot bind socket {target}: {os_fix(exc, target.parent)}") from None


def check_group(group: str) -> int:
    """The gid of ``group``, or the gid itself when given as digits; CollectorError when a
    named group does not exist."""
    if group.isascii() and group.isdigit():
        # No lookup: a chrooted Postfix may run with a gid that has no entry on this host.
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise CollectorError(
            f"socket_group {group!r} does not exist: create it or fix collectd.socket_group"
        ) from None


def resolve_senders(cfg: CollectdConfig) -> Senders | None:
    """``allowed_users`` and ``allowed_groups`` as ids, or None when both are empty (every
    writer the socket's permissions let in). ConfigError names the key of an unknown name.

    Resolved once at start: a lookup per datagram would cost the receive path far too much.
    """
    if not cfg.allowed_users and not cfg.allowed_groups:
        return None
    return Senders(
        uids=_ids(cfg.allowed_users, "allowed_users", "user", lambda n: pwd.getpwnam(n).pw_uid),
        gids=_ids(cfg.allowed_groups, "allowed_groups", "group", lambda n: grp.getgrnam(n).gr_gid),
    )


def _ids(
    entries: Iterable[str | int], key: str, kind: str, lookup: Callable[[str], int]
) -> frozenset[int]:
    ids: set[int] = set()
    for entry in entries:
        if isinstance(entry, int):
            ids.add(entry)
            continue
        try:
            ids.add(lookup(entry))
        except KeyError:
            raise ConfigError(
                f"collectd.{key}: there is no {kind} {entry!r} on this host: create it, fix the "
                "name, or give the numeric id"
            ) from None
    return frozenset(ids)


def _clear_stale(target: Path) -> None:
    try:
        st = target.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:  # a file where a directory should be, a directory we may not search
        raise CollectorError(f"cannot use socket path {target}: {os_fix(exc, target)}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise CollectorError(
            f"{target} exists and is not a socket: refusing to replace it, move it away"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(str(target))
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            target.unlink()  # nobody listens: a leftover of a collector that died
            return
        raise CollectorError(
            f"cannot tell whether a collector is running on {target} ({exc.strerror}): "
            "stop it or remove the socket file"
        ) from None
    finally:
        probe.close()
    raise CollectorError(
        f"another collector is already running on {target}: stop it first or use another socket"
    )
