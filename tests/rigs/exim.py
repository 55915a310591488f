"""A test rig that makes Debian's real Exim deliver mail to fake MX servers on loopback.

The Postfix rig (``postfixrig``) does the same for Postfix; this one captures the main-log lines
that a real Exim 4 (Debian's ``exim4-daemon-light``, built with GnuTLS) writes for good and bad
receiving servers.

Exim is never installed: Debian's exim4 packages conflict with the installed postfix (both are
the system MTA). Instead ``exim_available`` fetches ``exim4-daemon-light`` with
``apt-get download`` (plus the packages of any shared library ``ldd`` reports missing, e.g.
``libidn12``), unpacks them with ``dpkg-deb -x`` into a cache directory (``/var/cache/
tlsrpt-test-exim`` or ``$TLSRPT_EXIM_CACHE``) and runs the unpacked ``usr/sbin/exim4`` with
``LD_LIBRARY_PATH`` pointing at the unpacked libraries. A second run reuses the cache. The
unpacked binary loses its setuid bit: for a setuid program the loader ignores LD_LIBRARY_PATH,
and the rig runs Exim as root only anyway.

Debian's build has the Exim user ``Debian-exim`` compiled in and looks it up before it reads any
configuration, so that system user must exist (``useradd --system --user-group Debian-exim``).
Everything else comes from a configuration file of the rig's own (``-C``; as root Exim keeps its
privileges with it): spool and log directories under ``workdir`` (``log/mainlog``), no daemon,
no queue runner. Exim re-executes itself with a cleaned environment, so ``exim_path`` names a
small wrapper script in ``workdir/etc`` that sets LD_LIBRARY_PATH and execs the real binary.

Each domain is routed by a ``manualroute`` router to ``mx.<domain>::PORT``, the name the valid
certificate is issued for. Exim checks the certificate against the host name it looked up
(``tls_verify_cert_hostnames``), and there is no DNS here, so the names are resolved from a hosts
file: every Exim command runs under ``unshare --mount`` with the rig's hosts file bind-mounted
over ``/etc/hosts`` in that private mount namespace only (the real file is untouched). Where a
mount namespace cannot be made (an unprivileged container) the rig falls back to routing to the
IP literal ``127.0.0.1::PORT``; then Exim would check certificates against "127.0.0.1", so the
name check is switched off, and a ``mismatch`` certificate verifies like a valid one (see
``name_checks_possible``; setting ``TLSRPT_EXIM_NO_NAMESPACE=1`` forces this fallback).

TLS policy per destination (``Destination.level``, as in the Postfix rig), all in one ``smtp``
transport whose host lists expand on ``$domain``:

* ``verify``/``secure``: ``tls_verify_hosts`` and ``hosts_require_tls`` (CA: the rig's trustme
  CA, ``tls_verify_certificates``), name checked;
* ``encrypt``: ``hosts_require_tls`` only (verification tried, its failure tolerated: CV=no);
* ``may``: Exim's default, ``tls_try_verify_hosts = *``: TLS if offered, delivered with
  ``CV=no`` when the certificate does not verify;
* ``none``: ``hosts_avoid_tls``.

Messages are submitted one by one: queued with ``exim4 -odq`` (the receiving process gives up
root, and could not re-execute a binary that is not setuid), then delivered at once with
``exim4 -M ID`` as root. ``connection_max_messages = 1`` keeps Exim from re-executing itself to
pass queued mail down an open connection. A deferred message stays in the queue: there is no
daemon or queue runner, and the retry rule waits an hour. Before each delivery the retry hints
database is removed, so a second message to a host that just failed is really tried again.
"""

from __future__ import annotations

import functools
import os
import pwd
import re
import shutil
import stat
import subprocess
from pathlib import Path

from support.collector import make_traversable

from rigs.postfix37 import (
    Destination,
    check_destinations,
    copy_log,
    fresh_workdir,
    log_tail,
    start_fake_mxs,
    wait_for_outcomes,
)
from rigs.smtpserver import SmtpServer

__all__ = [
    "Destination",
    "copy_log",
    "exim_available",
    "exim_binary",
    "exim_version",
    "name_checks_possible",
    "run_exim",
]

HOST = "127.0.0.1"
# The levels the rig can express in Exim (no "dane": the fake MX servers have no TLSA records).
LEVELS = ("verify", "secure", "encrypt", "may", "none")
SENDER = "sender@rig.test"
EXIM_USER = "Debian-exim"
CACHE_DIR = Path(os.environ.get("TLSRPT_EXIM_CACHE", "/var/cache/tlsrpt-test-exim"))
PACKAGES = ("exim4-daemon-light",)
# The shared libraries exim4-daemon-light links against that a Debian 12 system with Postfix may
# lack, and the Debian packages that hold them.
LIBRARY_PACKAGES = {
    "libidn.so.12": "libidn12",
    "libgnutls-dane.so.0": "libgnutls-dane0",
    "libunbound.so.8": "libunbound8",
    "libevent-2.1.so.7": "libevent-2.1-7",
    "libnsl.so.2": "libnsl2",
    "libtirpc.so.3": "libtirpc3",
    "libdb-5.3.so": "libdb5.3",
    "libpcre2-8.so.0": "libpcre2-8-0",
    "libgnutls.so.30": "libgnutls30",
    "libidn2.so.0": "libidn2-0",
}
LOG_NAME = "mainlog"
_LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib", "lib")
_DONE = re.compile(r" (=>|==|\*\*) (\S+)")


def exim_root() -> Path:
    """The directory the packages are unpacked into (``usr/sbin/exim4`` lives under it)."""
    return CACHE_DIR / "root"


def exim_binary() -> Path:
    """The unpacked Exim binary."""
    return exim_root() / "usr" / "sbin" / "exim4"


def _env() -> dict[str, str]:
    """The environment for the unpacked Exim and ldd: LD_LIBRARY_PATH at its libraries."""
    root = exim_root()
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    env["LD_LIBRARY_PATH"] = ":".join(str(root / lib) for lib in _LIB_DIRS)
    return env


def _run(
    args: list[str], cwd: Path | None = None, exim_env: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command; with ``exim_env``, with LD_LIBRARY_PATH set for the unpacked libraries."""
    env = _env() if exim_env else None
    return subprocess.run(
        args, capture_output=True, text=True, check=False, timeout=300, cwd=cwd, env=env
    )


def _first_line(done: subprocess.CompletedProcess[str]) -> str:
    """The last meaningful line of a failed command's output (apt warnings left out)."""
    text = done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}"
    lines = [line for line in text.splitlines() if not line.startswith("W: ")]
    return lines[-1] if lines else text.splitlines()[-1]


def _download(packages: list[str]) -> str | None:
    """apt-get download and unpack ``packages`` into the cache; None or a reason."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "apt-get and dpkg-deb are needed to fetch Exim (not a Debian system?)"
    debs = CACHE_DIR / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    before = set(debs.glob("*.deb"))
    done = _run(["apt-get", "download", *packages], cwd=debs, exim_env=False)
    if done.returncode != 0:
        return (
            f"apt-get download {' '.join(packages)} failed (no network, or run apt-get update?): "
            f"{_first_line(done)}"
        )
    new = sorted(set(debs.glob("*.deb")) - before)
    if not new:
        return f"apt-get download {' '.join(packages)} fetched no .deb file"
    for deb in new:
        unpacked = _run(["dpkg-deb", "-x", str(deb), str(exim_root())], exim_env=False)
        if unpacked.returncode != 0:
            return f"dpkg-deb -x {deb.name} failed: {_first_line(unpacked)}"
    return None


def _missing_libraries() -> list[str]:
    """The sonames ldd reports as "not found" for the unpacked binary."""
    done = _run(["ldd", str(exim_binary())])
    return re.findall(r"^\s*(\S+) => not found", done.stdout, re.MULTILINE)


def _prepare() -> str | None:
    """Check the prerequisites, fetch and unpack what is missing; None or a reason."""
    if os.geteuid() != 0:
        return "the Exim rig must run as root (exim -C keeps privileges only for root)"
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        return (
            f"there is no {EXIM_USER} user, which Debian's exim4 has compiled in "
            f"(useradd --system --user-group --no-create-home --home-dir /nonexistent "
            f"--shell /usr/sbin/nologin {EXIM_USER})"
        )
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the Exim cache directory {CACHE_DIR}: {exc}"
    if not exim_binary().exists():
        reason = _download(list(PACKAGES))
        if reason is not None:
            return reason
        if not exim_binary().exists():
            return f"{exim_binary()} is not in the unpacked {', '.join(PACKAGES)}"
    # The packaged binary is setuid root; then the loader runs it in secure mode and ignores
    # LD_LIBRARY_PATH. The rig runs it as root only, so the copy loses the setuid bit.
    mode = exim_binary().stat().st_mode
    if mode & stat.S_ISUID:
        exim_binary().chmod(stat.S_IMODE(mode) & ~stat.S_ISUID)
    for _ in range(3):
        missing = _missing_libraries()
        if not missing:
            break
        unknown = [lib for lib in missing if lib not in LIBRARY_PACKAGES]
        if unknown:
            return f"exim4 needs shared libraries the rig does not know a package for: {unknown}"
        reason = _download(sorted({LIBRARY_PACKAGES[lib] for lib in missing}))
        if reason is not None:
            return reason
    else:
        return f"exim4 still misses shared libraries: {_missing_libraries()}"
    done = _run([str(exim_binary()), "-C", "/dev/null", "-bV"])
    if done.returncode != 0 or "Exim version" not in done.stdout:
        return f"{exim_binary()} -bV failed: {_first_line(done)}"
    if "GnuTLS" not in done.stdout:
        return "this exim4 is not built with GnuTLS"
    return None


@functools.cache
def exim_available() -> str | None:
    """Return None when the rig can run here, else a one-line reason why not.

    The first call fetches and unpacks the packages into the cache (if not there yet); the
    answer is kept for the rest of the process.
    """
    return _prepare()


def exim_version() -> str:
    """The version of the unpacked Exim, e.g. ``4.96``."""
    done = _run([str(exim_binary()), "-C", "/dev/null", "-bV"])
    match = re.search(r"Exim version (\S+)", done.stdout)
    if match is None:
        raise RuntimeError(f"cannot tell the Exim version: {_first_line(done)}")
    return match.group(1)


@functools.cache
def name_checks_possible() -> bool:
    """True when a private mount namespace (for the hosts file) can be made here.

    Only then are MX host names used and certificates checked against them; otherwise the rig
    routes to the IP literal and the certificate name check is off.
    """
    if os.environ.get("TLSRPT_EXIM_NO_NAMESPACE"):
        return False
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["unshare", "--mount", "--", "mount", "--bind", "/etc/hosts", "/etc/hosts"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return done.returncode == 0


# --- the Exim instance ------------------------------------------------------------------------


def _domains(destinations: list[Destination], *levels: str) -> str:
    """A colon-separated Exim list of the domains whose level is one of ``levels``."""
    return ":".join(dest.domain for dest in destinations if dest.level in levels)


def _host_list(domains: str) -> str:
    """A host list that is ``*`` for the listed domains and empty for the others."""
    if not domains:
        return ""
    return "${if inlist{$domain}{" + domains + "}{*}{}}"


def _exim_conf(
    workdir: Path, destinations: list[Destination], ca_file: Path, routes: Path, names: bool
) -> str:
    """The rig's Exim configuration (``-C``)."""
    verify = _domains(destinations, "verify", "secure")
    require = _domains(destinations, "verify", "secure", "encrypt")
    avoid = _domains(destinations, "none")
    # Without host names Exim would check certificates against "127.0.0.1": no name check then.
    hostnames = _host_list(verify) if names else ""
    return f"""\
# Written by tests/eximrig.py: a private Exim that only delivers to the rig's fake MX servers.
exim_path = {workdir / "etc" / "exim4"}
keep_environment =
spool_directory = {workdir / "spool"}
log_file_path = {workdir / "log"}/%slog
exim_user = {EXIM_USER}
exim_group = {EXIM_USER}
primary_hostname = rig.exim.test
qualify_domain = rig.test
disable_ipv6 = true
host_lookup =
tls_advertise_hosts =
log_selector = +tls_peerdn +tls_certificate_verified
delay_warning = 0s

begin routers

rig_mx:
  driver = manualroute
  domains = lsearch;{routes}
  route_data = ${{lookup{{$domain}}lsearch{{{routes}}}}}
  host_find_failed = defer
  self = send
  transport = rig_smtp
  no_more

rig_sender:
  driver = redirect
  domains = rig.test
  data = :blackhole:

begin transports

rig_smtp:
  driver = smtp
  allow_localhost
  connect_timeout = 5s
  command_timeout = 10s
  data_timeout = 10s
  connection_max_messages = 1
  tls_verify_certificates = {ca_file}
  tls_verify_hosts = {_host_list(verify)}
  hosts_require_tls = {_host_list(require)}
  hosts_avoid_tls = {_host_list(avoid)}
  tls_verify_cert_hostnames = {hostnames}

begin retry

*   *   F,1h,1h
"""


def _command(workdir: Path, names: bool, *args: str) -> list[str]:
    """An Exim command line; with ``names``, inside a mount namespace with the rig's hosts file."""
    exim = [str(workdir / "etc" / "exim4"), "-C", str(workdir / "etc" / "exim.conf"), *args]
    if not names:
        return exim
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return ["unshare", "--mount", "--", "sh", "-c", script, str(workdir / "etc" / "hosts"), *exim]


def _exim(workdir: Path, names: bool, *args: str, message: str | None = None) -> str:
    """Run Exim with ``args`` (and ``message`` on stdin); raise on a non-zero exit code."""
    done = subprocess.run(
        _command(workdir, names, *args),
        input=message,
        text=True,
        capture_output=True,
        check=False,
        timeout=120,
        env=_env(),
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"exim {' '.join(args)} failed with exit code {done.returncode}: "
            f"{done.stdout}{done.stderr}\nlog tail:\n{log_tail(workdir / 'log' / LOG_NAME)}"
        )
    return done.stdout


def _queue(workdir: Path) -> set[str]:
    """The ids of the messages in the queue (from the spool's header files)."""
    return {path.name[:-2] for path in (workdir / "spool" / "input").glob("*-H")}


def _send(workdir: Path, names: bool, dest: Destination, number: int) -> None:
    """Queue one message (``-odq``), then deliver it as root (``-M``)."""
    message = (
        f"From: {SENDER}\n"
        f"To: {dest.recipient}\n"
        f"Subject: rig message {number} to {dest.domain} ({dest.kind}, {dest.level})\n"
        "\n"
        "This is a test message from the Exim TLS rig.\n"
    )
    before = _queue(workdir)
    _exim(workdir, names, "-odq", "-f", SENDER, "--", dest.recipient, message=message)
    new = sorted(_queue(workdir) - before)
    if len(new) != 1:
        raise RuntimeError(f"expected one new message in the queue, found {new}")
    # A host that has just failed would be skipped ("retry time not reached").
    for path in (workdir / "spool" / "db").glob("retry*"):
        path.unlink()
    # A deferral is no error of -M; Exim's exit code says nothing about the delivery here.
    subprocess.run(
        _command(workdir, names, "-M", new[0]),
        capture_output=True,
        check=False,
        timeout=120,
        env=_env(),
    )


def _outcomes(log: Path, destinations: list[Destination]) -> dict[str, int]:
    """Per domain, how many delivery, deferral or failure lines the main log holds."""
    text = log.read_text(errors="replace") if log.exists() else ""
    counts = {dest.domain: 0 for dest in destinations}
    recipients = {dest.recipient: dest.domain for dest in destinations}
    for line in text.splitlines():
        match = _DONE.search(line)
        if match is not None and match.group(2) in recipients:
            counts[recipients[match.group(2)]] += 1
    return counts


def run_exim(workdir: Path, destinations: list[Destination], timeout: float = 60) -> Path:
    """Run a private Exim against fake MX servers; return the path of its main log.

    ``workdir`` must not exist yet or be empty; everything the instance needs goes there (and
    the rig adds o+x to its ancestors, as the Exim user must reach the spool and log).

    Every destination gets ``messages`` messages; the function returns once the main log has a
    delivery (``=>``), deferral (``==``) or failure (``**``) line for each of them, after the
    fake MX servers are shut down. On timeout it raises ``TimeoutError`` with the log's tail.
    """
    reason = exim_available()
    if reason is not None:
        raise RuntimeError(f"cannot run Exim: {reason}")
    check_destinations(destinations, LEVELS)
    workdir = fresh_workdir(workdir, "Exim")
    config_dir = workdir / "etc"
    cert_dir = workdir / "certs"
    log_dir = workdir / "log"
    spool_dir = workdir / "spool"
    for directory in (config_dir, cert_dir, log_dir, spool_dir):
        directory.mkdir(parents=True, exist_ok=True)
    make_traversable(workdir)
    # The transport runs as the Exim user: it writes the log and the spool's hints databases.
    exim_user = pwd.getpwnam(EXIM_USER)
    for directory in (log_dir, spool_dir):
        os.chown(directory, exim_user.pw_uid, exim_user.pw_gid)
        directory.chmod(0o750)
    log = log_dir / LOG_NAME
    names = name_checks_possible()

    servers: list[SmtpServer] = []
    try:
        ca_file = start_fake_mxs(destinations, cert_dir, servers)
        routes = config_dir / "routes"
        # "mx.<domain>::PORT byname" (resolved from the hosts file), else "127.0.0.1::PORT".
        routes.write_text(
            "".join(
                f"{dest.domain}: {dest.mx_name}::{server.port} byname\n"
                if names
                else f"{dest.domain}: {HOST}::{server.port}\n"
                for dest, server in zip(destinations, servers, strict=True)
            )
        )
        (config_dir / "hosts").write_text(
            "127.0.0.1\tlocalhost\n" + "".join(f"{HOST}\t{dest.mx_name}\n" for dest in destinations)
        )
        # Exim re-executes itself (exim_path) with a cleaned environment: a wrapper script
        # brings back LD_LIBRARY_PATH for the unpacked libraries.
        wrapper = config_dir / "exim4"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"LD_LIBRARY_PATH='{_env()['LD_LIBRARY_PATH']}' exec '{exim_binary()}' \"$@\"\n"
        )
        wrapper.chmod(0o755)
        conf = config_dir / "exim.conf"
        conf.write_text(_exim_conf(workdir, destinations, ca_file, routes, names))
        conf.chmod(0o644)

        for dest in destinations:
            for number in range(1, dest.messages + 1):
                _send(workdir, names, dest, number)

        wait_for_outcomes(log, destinations, timeout, _outcomes, "Exim did not log an outcome")
    finally:
        for server in servers:
            server.__exit__(None, None, None)
    return log
