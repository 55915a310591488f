"""Running a command with its standard error on a real pseudo-terminal (the ``pty`` module),
for the tests of what commands draw on a terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time


def on_a_pty(cmd: list[str]) -> tuple[int, str]:
    """The exit status of ``cmd`` and what it wrote to standard error, a pseudo-terminal."""
    master, slave = pty.openpty()
    try:
        child = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave
        )
        os.close(slave)
        slave = -1
        out = bytearray()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if child.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end of the pty
                break
            if not chunk:
                break
            out += chunk
        status = child.wait(30)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return status, out.decode()
