"""``tlsrpt_collectd.system`` directly: ``sd_notify`` on real Unix datagram sockets (a path and
the abstract ``@`` form), the kernel figures it logs, and the niceness it takes on."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tlsrpt_collectd import system


@pytest.fixture
def notify_dir() -> Iterator[Path]:
    """A short directory: a socket path must fit in 107 bytes, tmp_path may not."""
    with tempfile.TemporaryDirectory(prefix="tlsrpt-notify-") as d:
        yield Path(d)


def receive(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    return sock.recv(65536)


def test_sd_notify_sends_exactly_the_message_to_the_socket_path(
    notify_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = notify_dir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        system.sd_notify(b"READY=1\nSTATUS=collecting on /run/tlsrpt.sock")
        system.sd_notify(b"STOPPING=1")
        assert receive(systemd) == b"READY=1\nSTATUS=collecting on /run/tlsrpt.sock"
        assert receive(systemd) == b"STOPPING=1"


def test_sd_notify_reaches_an_abstract_socket_named_with_an_at_sign(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"tlsrpt-test-notify-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        system.sd_notify(b"WATCHDOG=1")
        assert receive(systemd) == b"WATCHDOG=1"


def test_sd_notify_does_not_fail_when_nobody_listens_at_notify_socket(
    notify_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_dir / "gone"))
    system.sd_notify(b"READY=1")  # systemd went away: the daemon carries on
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + f"tlsrpt-test-nobody-{uuid.uuid4().hex}")
    system.sd_notify(b"READY=1")


# Python's audit events show every socket the call creates and every datagram it sends.
AUDIT_SCRIPT = """
import json, os, sys
events = []
sys.addaudithook(lambda event, args: events.append(event) if event.startswith("socket.") else None)
from tlsrpt_collectd import system
events.clear()
system.sd_notify(b"READY=1")
print(json.dumps(events))
"""


@pytest.mark.parametrize("value", [None, ""])
def test_sd_notify_opens_no_socket_outside_systemd(value: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    if value is not None:
        env["NOTIFY_SOCKET"] = value
    out = subprocess.run(
        [sys.executable, "-c", AUDIT_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_the_audit_probe_sees_sd_notify_send_when_notify_socket_is_set(
    notify_dir: Path,
) -> None:
    """The check above would pass vacuously if the probe could not see a send at all."""
    path = notify_dir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        env = {**os.environ, "NOTIFY_SOCKET": str(path)}
        out = subprocess.run(
            [sys.executable, "-c", AUDIT_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert "socket.sendto" in json.loads(out.stdout)
        assert receive(systemd) == b"READY=1"


def test_qlen_is_the_kernels_max_dgram_qlen() -> None:
    expected = Path("/proc/sys/net/unix/max_dgram_qlen").read_text().strip()
    assert expected.isdigit()
    assert system.qlen() == expected


def status_kb(field: str) -> int:
    """A ``/proc/self/status`` figure in kB, read independently of the module."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def test_rss_is_the_resident_memory_in_kilobytes() -> None:
    before = status_kb("VmRSS")
    value = system.rss()
    after = status_kb("VmRSS")
    assert re.fullmatch(r"\d+ kB", value), value
    kilobytes = int(value.split()[0])
    assert kilobytes > 1000  # a Python process with pytest loaded is megabytes
    # The resident size of the moment (a few pages of slack), not the far larger virtual size.
    assert min(before, after) - 512 <= kilobytes <= max(before, after) + 512
    assert kilobytes < status_kb("VmSize")


NICENESS_SCRIPT = """
import json, os, threading
from tlsrpt_collectd import system
started, done = threading.Event(), threading.Event()
tids = []
def worker():
    tids.append(threading.get_native_id())
    started.set()
    done.wait()
thread = threading.Thread(target=worker)
thread.start()
started.wait()
before = [os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, tids[0])]
system.yield_to_receiver()
after = [os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, tids[0])]
done.set()
thread.join()
print(json.dumps({"before": before, "after": after}))
"""


def test_yield_to_receiver_raises_the_niceness_of_every_thread_of_the_process() -> None:
    if os.getpriority(os.PRIO_PROCESS, 0) != 0:
        pytest.skip("the test runs at a non-default niceness")
    out = subprocess.run(
        [sys.executable, "-c", NICENESS_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["before"] == [0, 0]
    # The main thread and a thread started before the call: both yield to the receiver.
    assert result["after"] == [5, 5]
    assert os.getpriority(os.PRIO_PROCESS, 0) == 0  # only the child's niceness changed
