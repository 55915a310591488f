"""The queue length ``net.unix.max_dgram_qlen``, and a pass in a new network namespace.

A Unix datagram socket queues at most ``net.unix.max_dgram_qlen`` datagrams, a setting of the
network namespace read when the socket is created. A pass at any other queue length than the
machine's re-executes the benchmark script under ``unshare -n`` (root only) with ``--_inner``:
there :func:`inner_pass` sets the sysctl, runs the pass and writes its results as JSON for
:func:`run_namespaced`. The host's setting is never changed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.model import STOP_TIMEOUT, Data, Row, Settings

QLEN_FILE = Path("/proc/sys/net/unix/max_dgram_qlen")
EXIT_NO_SYSCTL = 3


def read_qlen() -> int:
    """``net.unix.max_dgram_qlen`` of this process's network namespace."""
    return int(QLEN_FILE.read_text())


def resolve_qlens(spec: str, host_qlen: int) -> list[int]:
    """'512,host' -> [512, host value], without repeats."""
    qlens: list[int] = []
    for item in spec.split(","):
        value = host_qlen if item.strip() == "host" else int(item)
        if value < 1:
            raise ValueError(f"queue length must be >= 1, got {value}")
        if value not in qlens:
            qlens.append(value)
    return qlens


def run_namespaced(
    script: Path, qlen: int, root: Path, settings: Settings, data_file: Path, *, sys4: str | None
) -> tuple[list[Row], list[str]]:
    """Re-execute ``script`` in a new network namespace at ``qlen``.

    Returns the pass's rows and failure lines, or no rows and why the pass was skipped.
    """
    why = _namespaced(script, qlen, root, settings, data_file, sys4=sys4)
    result = root / f"result-{qlen}.json"
    if why or not result.exists():
        return [], [f"qlen {qlen} measurement skipped: {why or 'it wrote no result'}"]
    got = json.loads(result.read_text())
    return [Row(**r) for r in got["rows"]], got["failures"]


def _namespaced(
    script: Path, qlen: int, root: Path, settings: Settings, data_file: Path, *, sys4: str | None
) -> str:
    """Run the pass under ``unshare -n``; why it could not run, or "" when it did."""
    if os.geteuid() != 0:
        return "not running as root (needed to set the sysctl in a new network namespace)"
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) not found"
    result = root / f"result-{qlen}.json"
    errors = root / f"stderr-{qlen}.txt"
    cmd = [unshare, "-n", "--", sys.executable, str(script), "--_inner"]
    cmd += [f"--qlen={qlen}", f"--_data={data_file}", f"--_result={result}", *settings.as_args()]
    if sys4 is not None:
        cmd.append(f"--_sys4={sys4}")
    limit = 3 * settings.duration + 1800
    with errors.open("wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=err)
        try:
            code = proc.wait(limit)
        except subprocess.TimeoutExpired:
            return f"the namespaced pass did not finish within {limit:.0f} s"
        finally:
            if proc.poll() is None:  # a timeout, or this process is being stopped
                proc.terminate()  # lets the pass stop its collectors and remove its files
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    text = errors.read_text(errors="replace").strip()
    if code == 0:
        if text:
            print(text, file=sys.stderr)
        return ""
    last = text.splitlines()[-1] if text else "no error output"
    if code == EXIT_NO_SYSCTL:
        return last
    if "\n" in text:  # a traceback: show it whole
        print(text, file=sys.stderr)
    return f"the namespaced pass failed (exit code {code}): {last}"


def inner_pass(
    qlen: int,
    data_file: Path,
    result_file: Path,
    run_pass: Callable[[Path, Data], tuple[list[Row], list[str]]],
) -> int:
    """The re-executed part: set the queue length in this namespace, run
    ``run_pass(temporary directory, data)``, write its rows and failures as JSON."""
    try:
        QLEN_FILE.write_text(f"{qlen}\n")
    except OSError as exc:
        print(f"cannot set net.unix.max_dgram_qlen to {qlen} ({exc.strerror})", file=sys.stderr)
        return EXIT_NO_SYSCTL
    if read_qlen() != qlen:
        print(f"net.unix.max_dgram_qlen reads {read_qlen()} after setting {qlen}", file=sys.stderr)
        return EXIT_NO_SYSCTL
    data = Data.load(data_file)
    with tempfile.TemporaryDirectory(prefix="tlsrpt-bench-") as tmp:
        rows, failures = run_pass(Path(tmp), data)
    found = {"rows": [dataclasses.asdict(r) for r in rows], "failures": failures}
    result_file.write_text(json.dumps(found))
    return 0
