"""What the collector asks of its host: systemd's readiness notification, a lower CPU priority
than its receive process, a signal to the receive process when the daemon dies, and the figures
it logs (memory, the kernel's queue length).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
from pathlib import Path

# Added to this process's niceness once the receive process runs (see yield_to_receiver).
_DAEMON_NICENESS = 5
_PR_SET_PDEATHSIG = 1


def sd_notify(message: bytes) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message, path)


def yield_to_receiver() -> None:
    """Lower this process's CPU priority (every thread) below the receive process's.

    On a busy machine the receiver must get a core within milliseconds of a datagram's
    arrival (512 datagrams last 25 ms at 20,000/s); this process's work can wait, because the
    receiver buffers. Raising one's own niceness needs no privilege. A receive process started
    again later inherits the lower priority, which costs margin, not correctness.
    """
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except (OSError, ValueError):
        return
    for tid in threads:
        # Each thread on its own: one that ended meanwhile must not spare the others.
        with contextlib.suppress(OSError):
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, current + _DAEMON_NICENESS)


def rss() -> str:
    """This process's resident memory as the kernel reports it (for a debug line)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return "unknown"
    return status.split("VmRSS:")[1].split("\n")[0].strip()


def qlen() -> str:
    """``net.unix.max_dgram_qlen`` of this network namespace: how many datagrams may wait."""
    try:
        return Path("/proc/sys/net/unix/max_dgram_qlen").read_text().strip()
    except OSError:
        return "unknown"


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent dies, SIGKILL included."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
