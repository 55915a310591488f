"""The built wheel, installed into a fresh virtualenv, works without the checkout.

The wheel is built (``pip wheel --no-deps``) from a copy of the checkout this file is in, so
that the build leaves nothing in the checkout and nothing stale from an earlier build (a
``build/`` folder) can end up in the wheel. It is installed into a new virtualenv (its
dependencies come from the package index), and the installed commands and modules run from a
directory outside the checkout, without PYTHONPATH: a module missing from the wheel cannot be
imported from the source tree by accident. ``--help`` runs on the plain install; the modules
are imported and ``tlsrpt-reporter demo`` runs after the ``demo`` extra is added.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.paths import ROOT

# Folder in the checkout -> import name of the package installed from it.
PACKAGES = {"tlsrpt_reporter": "tlsrpt_reporter", "collectd": "tlsrpt_collectd"}
COMMANDS = ("tlsrpt-collectd", "tlsrpt-reporter")
# The subcommands the README documents.
SUBCOMMANDS = {
    "export", "replay", "ingest-log", "build", "send", "run", "status", "check-config",
    "check-record", "inspect", "demo",
}  # fmt: skip
BUILD_TIMEOUT = 600
INSTALL_TIMEOUT = 900
COMMAND_TIMEOUT = 120
DEMO_TIMEOUT = 300
# What pip prints when it cannot reach the index.
_OFFLINE = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
    r"Could not fetch URL|No matching distribution found|Network is unreachable|"
    r"ConnectTimeout|ReadTimeout|ProxyError|SSLError",
)
_JUNK = {".git", "__pycache__", "build", "dist", ".mypy_cache", ".ruff_cache", ".pytest_cache"}

# Run by the venv's python: walk both packages, import every module, say where each came from.
_IMPORT_ALL = """
import importlib, json, pkgutil, sys, traceback
found, files, errors = [], {}, {}
def failed(name):
    errors[name] = traceback.format_exc()
for top in ("tlsrpt_reporter", "tlsrpt_collectd"):
    try:
        package = importlib.import_module(top)
    except Exception:
        failed(top)
        continue
    found.append(top)
    found += [m.name for m in pkgutil.walk_packages(package.__path__, top + ".", failed)]
for name in found:
    if name.rpartition(".")[2] == "__main__":
        continue  # running it is the command's job; it is checked to be in the wheel
    try:
        files[name] = importlib.import_module(name).__file__
    except Exception:
        failed(name)
json.dump({"found": found, "files": files, "errors": errors}, sys.stdout)
"""


def _ignore(folder: str, names: list[str]) -> set[str]:
    """What the build copy leaves out: VCS data, virtualenvs, caches, build output, and
    anything that is not a regular file, folder or link (a test's socket)."""
    left_out = set()
    for name in names:
        path = os.path.join(folder, name)
        mode = os.lstat(path).st_mode
        if (
            name in _JUNK
            or name.endswith(".egg-info")
            or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode))
            or (stat.S_ISDIR(mode) and os.path.exists(os.path.join(path, "pyvenv.cfg")))
        ):
            left_out.add(name)
    return left_out


def _clean_env(venv: Path | None = None) -> dict[str, str]:
    """The environment of every subprocess: no PYTHONPATH or user site-packages, and the
    venv's bin first on PATH when there is one. pip's own settings (index, certificates)
    stay."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV"}
    }
    env["PYTHONNOUSERSITE"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(
    cmd: list[str], what: str, *, cwd: Path, env: dict[str, str], timeout: float, pip: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; fail the test with ``what`` and the output's tail unless it exits 0."""
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        hint = " (is the package index reachable?)" if pip else ""
        pytest.fail(f"{what} failed: no result within {exc.timeout:.0f} s{hint}", pytrace=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        tail = "\n".join(output.splitlines()[-25:]) or "(no output)"
        why = ""
        if pip and _OFFLINE.search(output):
            why = (
                ": pip could not reach the package index (PyPI, or the index pip is configured "
                "for), which this test needs for the build requirements and the dependencies"
            )
        pytest.fail(
            f"{what} failed (exit code {done.returncode}){why}\n$ {' '.join(cmd)}\n{tail}",
            pytrace=False,
        )
    return done


@dataclass(frozen=True)
class Installed:
    """The built wheel, the copy it was built from, and a virtualenv it is installed in."""

    source: Path
    wheel: Path
    venv: Path
    outside: Path
    help_runs: dict[str, subprocess.CompletedProcess[str]] = field(repr=False)

    def run(self, args: list[str], what: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run a command of the venv outside the checkout; its stdout (fails unless exit 0)."""
        cmd = [str(self.venv / "bin" / args[0]), *args[1:]]
        env = _clean_env(self.venv)
        return _run(cmd, what, cwd=self.outside, env=env, timeout=timeout).stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Build the wheel, install it into a new venv, run ``--help`` of both commands, then add
    the ``demo`` extra (the --help runs show the plain install is enough for the commands)."""
    base = tmp_path_factory.mktemp("packaging")
    if base.resolve().is_relative_to(ROOT):
        pytest.fail(f"the temporary directory {base} is inside the checkout {ROOT}")
    source = base / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_ignore)
    outside = base / "elsewhere"
    outside.mkdir()
    env = _clean_env()
    dist = base / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist)]
    _run([*build, str(source)], "building the wheel", cwd=outside, env=env,
         timeout=BUILD_TIMEOUT, pip=True)  # fmt: skip
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {dist}, found {wheels}"
    wheel = wheels[0]
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], "creating the virtualenv", cwd=outside,
         env=env, timeout=COMMAND_TIMEOUT)  # fmt: skip
    venv_env = _clean_env(venv)

    def install(spec: str, what: str) -> None:
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-input"]
        _run([*pip, spec], what, cwd=outside, env=venv_env, timeout=INSTALL_TIMEOUT, pip=True)

    install(str(wheel), "installing the wheel into the new virtualenv")
    help_runs = {
        command: subprocess.run(
            [str(venv / "bin" / command), "--help"],
            cwd=outside,
            env=venv_env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        for command in COMMANDS
    }
    install(f"{wheel}[demo]", "installing the wheel's demo extra")
    yield Installed(source, wheel, venv, outside, help_runs)


def _source_modules(source: Path) -> set[str]:
    """Every module in the source folders, by the name it is installed under."""
    names = set()
    for folder, package in PACKAGES.items():
        for path in (source / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            parts = [package, *path.relative_to(source / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            names.add(".".join(parts))
    return names


@pytest.mark.slow
def test_wheel_holds_every_module_data_file_and_command(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        members = set(wheel.namelist())
        entry_points = next(
            wheel.read(name).decode() for name in members if name.endswith("entry_points.txt")
        )
    wanted = {"tlsrpt_reporter/py.typed", "tlsrpt_collectd/py.typed"}
    data = installed.source / "tlsrpt_reporter" / "data"
    data_files = {f"tlsrpt_reporter/data/{p.name}" for p in data.iterdir() if p.is_file()}
    assert data_files, f"no data files in {data}"
    wanted |= data_files
    for folder, package in PACKAGES.items():
        for path in (installed.source / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                wanted.add(f"{package}/{path.relative_to(installed.source / folder)}")
    assert not wanted - members, f"missing from {installed.wheel.name}: {sorted(wanted - members)}"
    assert not any(name.startswith("collectd/") for name in members), "collectd/ not renamed"
    for command in COMMANDS:
        assert re.search(rf"^{command}\s*=", entry_points, re.M), entry_points


@pytest.mark.slow
def test_installed_commands_show_their_help_outside_the_checkout(installed: Installed) -> None:
    for command, done in installed.help_runs.items():
        assert done.returncode == 0, (
            f"{command} --help (plain install, no extras) exited with {done.returncode}:\n"
            f"{done.stdout}{done.stderr}"
        )
        assert "usage:" in done.stdout, done.stdout
    reporter = installed.help_runs["tlsrpt-reporter"].stdout
    listed = set(re.findall(r"^ {4}([a-z][a-z-]*)(?: {2,}|$)", reporter, re.M))
    missing = SUBCOMMANDS - listed
    assert not missing, f"tlsrpt-reporter --help does not list {sorted(missing)}:\n{reporter}"


@pytest.mark.slow
def test_every_module_imports_from_the_installed_wheel(installed: Installed) -> None:
    out = installed.run(["python", "-c", _IMPORT_ALL], "importing every installed module")
    got = json.loads(out)
    assert not got["errors"], "modules that do not import from the installed wheel:\n" + "\n".join(
        f"--- {name}\n{text}" for name, text in got["errors"].items()
    )
    expected = _source_modules(installed.source)
    found = set(got["found"])
    assert expected == found, (
        f"in the source but not installed: {sorted(expected - found)}; "
        f"installed but not in the source: {sorted(found - expected)}"
    )
    site = (installed.venv / "lib").resolve()
    strays = {n: f for n, f in got["files"].items() if not Path(f).resolve().is_relative_to(site)}
    assert not strays, f"imported from outside the virtualenv: {strays}"


@pytest.mark.slow
def test_demo_runs_from_the_installed_wheel(installed: Installed) -> None:
    out = installed.run(["tlsrpt-reporter", "demo"], "tlsrpt-reporter demo", DEMO_TIMEOUT)
    # Exit code 0 is checked by run(); the demo leaves its files in a temporary directory.
    workdir = re.search(r"everything is in (\S+)", out)
    if workdir:
        shutil.rmtree(workdir[1], ignore_errors=True)
