"""Memory and time of processes, and a description of the machine the figures come from."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of a running process in KiB; 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (of all its threads)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def own_peak_rss_mib() -> float:
    """This process's peak resident set size in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(cmd: list[str], work: Path) -> tuple[float, float, str]:
    """Run ``cmd``; (wall seconds, its own peak RSS in MiB, its stdout). Exits on failure."""
    out_path, err_path = work / "out.txt", work / "err.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in earlier runs).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {err_path.read_text().strip()}")
    return wall, usage.ru_maxrss / 1024, out_path.read_text()


def machine_lines() -> list[str]:
    """The CPUs, the load and the Python the figures come from (the machine is shared)."""
    return [
        f"CPUs: {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"Python {platform.python_version()} ({sys.executable})",
    ]
