"""The systemd units in systemd/: accepted by systemd's own checker, hardened as documented,
consistent with the code's defaults, and the collector started the way systemd starts it.

``systemd-analyze`` and ``systemd-socket-activate`` come with Debian's ``systemd`` package.
"""

from __future__ import annotations

import array
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.collector import Collector, send_all
from support.paths import ROOT

from tlsrpt_reporter.config import load as configmod
from tlsrpt_reporter.config.schema import CollectdConfig
from tlsrpt_reporter.wire.encode import datagram

MakeCollector = Callable[..., Collector]
Unit = dict[str, dict[str, list[str]]]

UNIT_DIR = ROOT / "systemd"
UNITS = (
    "tlsrpt-collectd.socket",
    "tlsrpt-collectd.service",
    "tlsrpt-reporter.service",
    "tlsrpt-reporter-send.service",
    "tlsrpt-reporter-send.timer",
    "tlsrpt-ingest-log.service",
    "tlsrpt-push.service",
    "tlsrpt-push.timer",
)
SERVICES = tuple(u for u in UNITS if u.endswith(".service"))
# Where systemd/README.md installs the project, and so where every ExecStart= points.
VENV_BIN = "/opt/tlsrpt-reporter/venv/bin"
DISTRO_UNITS = Path("/usr/lib/systemd/system")

HARDENING = {
    "ProtectSystem": "strict",
    "StateDirectory": "tlsrpt-reporter",
    "ConfigurationDirectory": "tlsrpt-reporter",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectHome": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "SystemCallFilter": "@system-service",
    "SystemCallArchitectures": "native",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
    "UMask": "0027",
    "User": "tlsrpt",
    "Group": "tlsrpt",
}
ADDRESS_FAMILIES = {
    "tlsrpt-collectd.service": "AF_UNIX",
    # DNS, SMTP and HTTPS.
    "tlsrpt-reporter.service": "AF_UNIX AF_INET AF_INET6",
    "tlsrpt-reporter-send.service": "AF_UNIX AF_INET AF_INET6",
    "tlsrpt-ingest-log.service": "AF_UNIX",
    # PostgreSQL, over TCP or its Unix socket.
    "tlsrpt-push.service": "AF_UNIX AF_INET AF_INET6",
}

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1  # linux/prctl.h, Linux >= 6.3
# Runs a command with the kernel's own memory-deny-write-execute (inherited by children and
# kept across execve): the same refusal systemd's MemoryDenyWriteExecute= seccomp filter makes.
MDWE_WRAPPER = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit(f"PR_SET_MDWE: {{os.strerror(ctypes.get_errno())}}")
os.execv(sys.argv[1], sys.argv[1:])
"""


def need(tool: str) -> str:
    """The path of a tool from Debian's systemd package, or skip the test saying so."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian: apt-get install systemd)")
    return path


def parse_unit(path: Path) -> Unit:
    """A unit file as {section: {key: [values in order]}}; comments dropped."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}:{number}: keep directives on one line"
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path.name}:{number}: directive outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not a key=value line: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def service(name: str) -> dict[str, list[str]]:
    """The [Service] section of one of our units."""
    return parse_unit(UNIT_DIR / name)["Service"]


def exec_start(name: str) -> list[str]:
    """The ExecStart= command line of one of our services, split into words."""
    (line,) = service(name)["ExecStart"]
    return line.split()


def verify_root(base: Path) -> Path:
    """A file system tree for ``systemd-analyze verify --root``.

    It holds the distribution's unit files (for sysinit.target, network-online.target and the
    rest our units depend on), our units copied byte for byte into /etc/systemd/system, and at
    /opt/tlsrpt-reporter/venv/bin copies of this test's own console scripts, which verify
    checks exist and are executable. Copies, not symlinks: verify resolves symlinks inside the
    root, where the test's virtualenv does not exist; the copies still run (their #! line names
    the test's Python).
    """
    root = base / "root"
    shutil.copytree(DISTRO_UNITS, root / DISTRO_UNITS.relative_to("/"), symlinks=True)
    ours = root / "etc/systemd/system"
    ours.mkdir(parents=True)
    for name in UNITS:
        shutil.copy2(UNIT_DIR / name, ours / name)
    bin_dir = root / VENV_BIN.lstrip("/")
    bin_dir.mkdir(parents=True)
    for name in SERVICES:
        program = Path(exec_start(name)[0])
        assert str(program.parent) == VENV_BIN, f"{name}: ExecStart= outside {VENV_BIN}"
        if not (bin_dir / program.name).exists():
            shutil.copy2(Path(sys.executable).parent / program.name, bin_dir / program.name)
    return root


def verify(root: Path) -> tuple[int, str]:
    """Exit code and output of systemd-analyze verify on our units inside ``root``."""
    tool = need("systemd-analyze")
    files = [str(root / "etc/systemd/system" / name) for name in UNITS]
    result = subprocess.run(
        [tool, "verify", f"--root={root}", "--man=no", *files],
        capture_output=True, text=True, timeout=60, env=os.environ | {"SYSTEMD_COLORS": "0"},
    )  # fmt: skip
    return result.returncode, (result.stdout + result.stderr).strip()


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """The tree verify runs in; skips when systemd's unit files are not installed."""
    need("systemd-analyze")
    if not (DISTRO_UNITS / "sysinit.target").exists():
        pytest.skip(f"no {DISTRO_UNITS}/sysinit.target (Debian: apt-get install systemd)")
    return verify_root(tmp_path)


def test_systemd_analyze_verify_accepts_every_unit_without_a_word(unit_root: Path) -> None:
    code, output = verify(unit_root)
    # An unknown directive or a bad value is only a warning to verify (exit 0), so any output
    # at all is a failure.
    assert (code, output) == (0, "")
    for program in (unit_root / VENV_BIN.lstrip("/")).iterdir():
        result = subprocess.run([program, "--help"], capture_output=True, timeout=60)
        assert result.returncode == 0, f"{program.name} in the verify tree does not run"


@pytest.mark.parametrize(
    ("unit", "good", "bad"),
    [
        ("tlsrpt-collectd.service", "ProtectSystem=strict", "ProtectSystm=strict"),
        ("tlsrpt-reporter.service", "ProtectSystem=strict", "ProtectSystem=strick"),
        ("tlsrpt-collectd.socket", "SocketMode=0660", "SocketMode=rw-rw----"),
        ("tlsrpt-reporter-send.timer", "OnCalendar=*:0/15", "OnCalendar=every 15 minutes"),
        (
            "tlsrpt-reporter-send.service",
            "ExecStart=/opt/tlsrpt-reporter/venv/bin/tlsrpt-reporter ",
            "ExecStart=/opt/tlsrpt-reporter/venv/bin/tlsrpt-reportr ",
        ),
    ],
)
def test_verify_catches_a_typo_in_a_unit(unit_root: Path, unit: str, good: str, bad: str) -> None:
    # The same check as above on a copy with one mistake: proves the check can fail.
    path = unit_root / "etc/systemd/system" / unit
    lines = path.read_text().splitlines(keepends=True)
    (where,) = [n for n, line in enumerate(lines) if line.startswith(good)]
    lines[where] = lines[where].replace(good, bad, 1)
    path.write_text("".join(lines))
    code, output = verify(unit_root)
    assert code != 0 or output, f"verify did not notice {bad!r} in {unit}"
    assert unit in output


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_hardened_as_the_readme_says(name: str) -> None:
    section = service(name)
    for key, value in {**HARDENING, "RestrictAddressFamilies": ADDRESS_FAMILIES[name]}.items():
        assert section.get(key) == [value], f"{name}: expected {key}={value}"
    assert "DynamicUser" not in section, "a dynamic user could not share the WAL databases"
    if name == "tlsrpt-ingest-log.service":
        # Debian's mail logs are root:adm 0640: that group and no other.
        assert section["SupplementaryGroups"] == ["adm"]
    else:
        assert "SupplementaryGroups" not in section, "the socket comes from systemd"


def test_services_run_the_installed_commands_on_the_default_config() -> None:
    config = str(configmod.DEFAULT_CONFIG_PATH)
    assert exec_start("tlsrpt-collectd.service") == [
        f"{VENV_BIN}/tlsrpt-collectd", "--config", config,
    ]  # fmt: skip
    assert exec_start("tlsrpt-reporter.service") == [
        f"{VENV_BIN}/tlsrpt-reporter", "run", "--config", config,
    ]  # fmt: skip
    # A timer's pass keeps send times and backoff: never --now.
    assert exec_start("tlsrpt-reporter-send.service") == [
        f"{VENV_BIN}/tlsrpt-reporter", "send", "--config", config,
    ]  # fmt: skip
    assert exec_start("tlsrpt-ingest-log.service") == [
        f"{VENV_BIN}/tlsrpt-reporter", "ingest-log", "--format", "postfix", "--follow",
        "/var/log/mail.log", "--config", config,
    ]  # fmt: skip
    collector = service("tlsrpt-collectd.service")
    assert collector["Type"] == ["notify"]
    assert collector["NotifyAccess"] == ["main"]
    assert service("tlsrpt-reporter-send.service")["Type"] == ["oneshot"]
    timer = parse_unit(UNIT_DIR / "tlsrpt-reporter-send.timer")["Timer"]
    assert timer["Persistent"] == ["true"]
    assert "RandomizedDelaySec" in timer


def test_socket_is_the_collectors_default_inside_postfixs_queue_directory() -> None:
    sock = parse_unit(UNIT_DIR / "tlsrpt-collectd.socket")["Socket"]
    default = CollectdConfig()
    assert sock["ListenDatagram"] == [default.socket]
    # main.cf: smtp_tlsrpt_socket_name = run/tlsrpt/tlsrpt.sock, relative to the queue directory
    assert default.socket == "/var/spool/postfix/run/tlsrpt/tlsrpt.sock"
    assert sock["SocketUser"] == sock["SocketGroup"] == ["postfix"]
    assert sock["SocketMode"] == ["0660"]
    assert sock["DirectoryMode"] == ["0755"]
    assert "Requires" in parse_unit(UNIT_DIR / "tlsrpt-collectd.service")["Unit"]
    # Both databases live in the StateDirectory, the only place the services may write.
    state = Path("/var/lib/tlsrpt-reporter")
    assert Path(default.db).parent == state
    assert Path(configmod.parse({}).reporter.db).parent == state


def test_readme_says_to_enable_the_run_service_or_the_timer_not_both() -> None:
    text = (UNIT_DIR / "README.md").read_text()
    assert re.search(r"either\s+`tlsrpt-reporter\.service`", text)
    assert re.search(r"not\s+both", text)
    for name in UNITS:
        assert name in text, f"systemd/README.md does not mention {name}"


def _receive_notification(sock: socket.socket, timeout: float) -> tuple[bytes, int]:
    """One sd_notify message and the sender's pid (SO_PASSCRED), as systemd receives it."""
    sock.settimeout(timeout)
    creds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(creds.itemsize * 3))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            creds.frombytes(payload[: creds.itemsize * 3])
    assert creds, "no SCM_CREDENTIALS with the notification"
    return data, creds[0]


def test_collector_started_by_systemd_socket_activate_stores_and_notifies(
    make_collector: MakeCollector,
) -> None:
    activate = need("systemd-socket-activate")
    c = make_collector("activated")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    notify.bind(str(c.workdir / "notify.sock"))
    script = Path(sys.executable).parent / "tlsrpt-collectd"
    # systemd-socket-activate passes only PATH, HOME, USER, TERM and -E variables on; with a
    # datagram socket and no --accept it waits for the first datagram, then execs the collector
    # in its own process, as a .socket unit without Accept= does.
    with c.logfile.open("ab") as log:
        c.proc = subprocess.Popen(
            [activate, "--datagram", "--listen", str(c.socket),
             f"--setenv=NOTIFY_SOCKET={c.workdir / 'notify.sock'}",
             str(script), "--config", str(c.config)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        c.wait_for_log(f"Listening on {c.socket}")
        # Sent while no collector runs yet: it waits in the socket's queue.
        send_all(c.socket, [_success("early.example")])
        message, pid = _receive_notification(notify, timeout=20.0)
        assert message == b"READY=1"
        assert pid == c.proc.pid, "NotifyAccess=main: READY=1 must come from the main process"
        c.wait_for_log("(from systemd)")
        send_all(c.socket, [_success("later.example")])
        c.wait_for_counter("sessions", 2)
        assert c.stop(signal.SIGTERM) == 0
    finally:
        notify.close()
    assert c.socket.exists(), "the socket belongs to its activator and must stay"
    assert sorted(str(x["domain"]) for x in c.export()) == ["early.example", "later.example"]


def _success(domain: str) -> bytes:
    policy = {"policy-type": 9, "policy-domain": domain, "t": 0, "f": 0}
    return datagram(domain, [policy], f"v=TLSRPTv1; rua=mailto:r@{domain}")


def _mdwe_or_skip() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", MDWE_WRAPPER, "/bin/true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.skip(f"the kernel cannot deny write+execute memory: {probe.stderr.strip()}")


def test_memory_deny_write_execute_is_enforced_by_the_wrapper() -> None:
    _mdwe_or_skip()
    attempt = (
        "import mmap\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "except PermissionError:\n"
        "    print('refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", MDWE_WRAPPER, sys.executable, "-c", attempt],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.stdout.strip() == "refused", result.stderr


@pytest.mark.slow
def test_collector_and_reporter_work_without_writable_executable_memory() -> None:
    # MemoryDenyWriteExecute=yes is in every service: the demo runs the collector (with its
    # receive process), building, DKIM signing on every core, SMTP and HTTPS delivery and DKIM
    # verification under the kernel's equivalent of it.
    _mdwe_or_skip()
    result = subprocess.run(
        [sys.executable, "-c", MDWE_WRAPPER, str(Path(sys.executable).parent / "tlsrpt-reporter"),
         "demo", "--clean"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "received 3000, accepted 3000, rejected 0" in result.stdout
    assert re.search(r"DKIM: (\d+) of \1 mails verify", result.stdout), result.stdout
