"""What ``check-config`` says about the ``[collectd]`` section on this host: the directories the
collector writes into, who will be able to write to its socket, and whether the users and
groups it names exist.

Shared by ``tlsrpt-reporter check-config`` and ``tlsrpt-collectd --check-config`` (an MTA host
of a fleet may run only the collector). It looks things up (directories, the group and user
databases) and changes nothing; the collector itself does the same lookups when it starts
(``tlsrpt_collectd.listener``), so what is an ``error`` here stops the collector there.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable
from pathlib import Path

from tlsrpt_reporter.config.findings import Finding
from tlsrpt_reporter.config.schema import CollectdConfig
from tlsrpt_reporter.errors import os_fix

# Postfix's smtp(8) runs as mail_owner, "postfix" on every distribution.
_MTA_USER = "postfix"
_OTHERS_WRITE, _GROUP_WRITE = 0o002, 0o020


def collecting(cd: CollectdConfig) -> list[Finding]:
    """Every finding about ``[collectd]``: its directories, the socket's group, the senders."""
    return [*directories(cd), socket_group(cd), *senders(cd)]


def directories(cd: CollectdConfig) -> list[Finding]:
    """Whether the directories the collector writes into exist and take writes."""
    places: tuple[tuple[str, Path], ...] = (
        ("socket directory", Path(cd.socket).parent),
        ("database directory", Path(cd.db).parent),
    )
    if cd.metrics_file:
        places += (("metrics_file directory", Path(cd.metrics_file).parent),)
    found: list[Finding] = []
    for what, path in places:
        try:
            is_dir = path.is_dir()
        except OSError as exc:  # a directory above it cannot be searched by this user
            found.append(Finding("error", f"collecting: {what} {path}: {os_fix(exc, path)}"))
            continue
        if not is_dir:
            found.append(Finding("error", f"collecting: {what} {path} does not exist: create it"))
        elif not os.access(path, os.W_OK | os.X_OK):
            text = (f"collecting: {what} {path} is not writable by this user (the collector's "
                    "user must be able to write it)")  # fmt: skip
            found.append(Finding("warning", text))
        else:
            found.append(Finding("ok", f"collecting: {what} {path} exists"))
    return found


def socket_group(cd: CollectdConfig) -> Finding:
    """Who the socket will let write: its group as configured, or what an unset group means."""
    mode = f"{cd.socket_mode:04o}"
    systemd = " (when systemd passes the socket, its unit decides this instead)"
    group = cd.socket_group
    if not group:
        if cd.socket_mode & _OTHERS_WRITE:
            return Finding("ok", f"collecting: socket mode {mode} lets every local user write "
                           "(no collectd.socket_group needed)")  # fmt: skip
        return Finding(
            "warning",
            f"collecting: collectd.socket_group is not set: the socket will belong to the "
            f"collector's user and group ({_owner()} when run as this user) with mode {mode}, "
            f"which Postfix's smtp(8) (user {_MTA_USER}) cannot write to: set "
            f'socket_group = "{_MTA_USER}"{systemd}',
        )
    if group.isascii() and group.isdigit():
        found = f"gid {group} (taken as it is, no group entry needed)"
    else:
        try:
            found = f"{group} (gid {grp.getgrnam(group).gr_gid})"
        except KeyError:
            # listener.check_group: the collector refuses to start.
            return Finding("error", f"collecting: collectd.socket_group {group!r} does not "
                           "exist on this host: create the group or fix it")  # fmt: skip
    if not cd.socket_mode & _GROUP_WRITE:
        return Finding("warning", f"collecting: socket_mode {mode} does not let the socket's "
                       f"group {found} write: use \"0660\"{systemd}")  # fmt: skip
    return Finding("ok", f"collecting: socket group {found}, mode {mode}")


def senders(cd: CollectdConfig) -> list[Finding]:
    """An ``error`` for each name in ``allowed_users`` / ``allowed_groups`` this host lacks (the
    collector looks them up at start and refuses to start without them)."""
    found: list[Finding] = []
    for key, kind, lookup in (
        ("allowed_users", "user", _user_id),
        ("allowed_groups", "group", _group_id),
    ):
        entries: tuple[str | int, ...] = getattr(cd, key)
        unknown = [e for e in entries if isinstance(e, str) and lookup(e) is None]
        found += [
            Finding("error", f"collecting: collectd.{key}: there is no {kind} {entry!r} on "
                    "this host: create it, fix the name, or give the numeric id")
            for entry in unknown
        ]  # fmt: skip
        if entries and not unknown:
            shown = ", ".join(str(e) for e in entries)
            found.append(Finding("ok", f"collecting: collectd.{key}: {shown}"))
    return found


def _owner() -> str:
    return f"{_name(pwd.getpwuid, os.geteuid())}:{_name(grp.getgrgid, os.getegid())}"


def _name(lookup: Callable[[int], object], number: int) -> str:
    try:
        entry = lookup(number)
    except KeyError:
        return str(number)
    return str(getattr(entry, "pw_name", None) or getattr(entry, "gr_name", number))


def _user_id(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
