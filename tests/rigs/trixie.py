"""A Debian 13 ("trixie") root holding Postfix 3.10 and libtlsrpt, built once and cached.

Debian 12 ships Postfix 3.7, which has no TLSRPT support; Debian 13 ships Postfix 3.10.13 built
with libtlsrpt 0.5.0rc1. Its binaries need trixie's glibc, so they run chrooted in a root made by
``debootstrap --variant=minbase --include=postfix,libtlsrpt0 trixie``. The root lives outside
the checkout (``/var/cache/tlsrpt-reporter-tests/trixie`` unless ``TLSRPT_TRIXIE_ROOT`` says
otherwise) and is rebuilt when missing or incomplete.

The Debian mirror is read from this machine's apt sources at run time, so no host name is
written into the repository. Standard library only: ``.ci/run`` calls this file with the
system's python3 before the project's virtualenv exists::

    python3 tests/rigs/trixie.py ensure     # build when missing, print the root's path
    python3 tests/rigs/trixie.py versions   # what the root holds
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_ROOT = Path("/var/cache/tlsrpt-reporter-tests/trixie")
SUITE = "trixie"
PACKAGES = ("postfix", "libtlsrpt0")
# What a complete root has; a root missing any of these is built again.
_REQUIRED = ("usr/sbin/postfix", "usr/sbin/sendmail", "etc/postfix/master.cf", "etc/passwd")
_APT_LIST = Path("/etc/apt/sources.list")
_APT_DIR = Path("/etc/apt/sources.list.d")
_BUILD_TIMEOUT = 900


class RootUnavailable(RuntimeError):
    """The trixie root does not exist and cannot be built here; the message says why."""


def root_path() -> Path:
    """Where the root is (or will be) kept."""
    return Path(os.environ.get("TLSRPT_TRIXIE_ROOT") or DEFAULT_ROOT)


def is_complete(root: Path) -> bool:
    """True when ``root`` holds every file the rig uses."""
    return all((root / name).exists() for name in _REQUIRED) and any(
        root.glob("usr/lib/*/libtlsrpt.so.0")
    )


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (not the security archive).

    Reads deb822 ``.sources`` files and one-line ``sources.list`` entries; RootUnavailable when
    none names a Debian archive with the ``main`` component.
    """
    candidates: list[tuple[str, list[str], list[str]]] = []
    if _APT_DIR.is_dir():
        for path in sorted(_APT_DIR.glob("*.sources")):
            candidates += _deb822(path.read_text(errors="replace"))
        for path in sorted(_APT_DIR.glob("*.list")):
            candidates += _one_line(path.read_text(errors="replace"))
    if _APT_LIST.is_file():
        candidates += _one_line(_APT_LIST.read_text(errors="replace"))
    for uri, suites, components in candidates:
        if "main" not in components or uri.rstrip("/").endswith("-security"):
            continue
        if any(not suite.endswith("-security") for suite in suites):
            return uri
    raise RootUnavailable(
        "no Debian archive with the main component in /etc/apt/sources.list(.d): "
        "cannot tell debootstrap where to download trixie from"
    )


def _deb822(text: str) -> list[tuple[str, list[str], list[str]]]:
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        components = fields.get("components", "").split()
        found += [(uri, suites, components) for uri in fields.get("uris", "").split()]
    return found


def _one_line(text: str) -> list[tuple[str, list[str], list[str]]]:
    found = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 4 and words[0] == "deb":
            found.append((words[1], [words[2]], words[3:]))
    return found


def ensure_root() -> Path:
    """The complete root, built with debootstrap when missing (35-65 s here).

    Built in a temporary directory beside the target and renamed into place, so an interrupted
    build never leaves a half root that looks complete. RootUnavailable when it cannot be built.
    """
    root = root_path()
    if is_complete(root):
        _open_root(root)
        return root
    if os.geteuid() != 0:
        raise RootUnavailable(f"{root} is missing and only root can build it (debootstrap)")
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise RootUnavailable(f"{root} is missing and debootstrap is not installed")
    mirror = debian_mirror()
    root.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    cmd = [
        debootstrap,
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(building),
        mirror,
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_BUILD_TIMEOUT, check=False
        )
        if done.returncode != 0 or not is_complete(building):
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise RootUnavailable(
                f"debootstrap of {SUITE} from {mirror} failed (exit {done.returncode}):\n{tail}"
            )
        _open_root(building)
        if root.exists():
            shutil.rmtree(root)
        building.rename(root)
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return root


def _open_root(root: Path) -> None:
    """Make the root traversable by everyone, as a real "/" is: mkdtemp made it 0700, and inside
    the chroot Postfix's master, once it drops to the postfix user, could not reach its own
    data_directory ("mail system startup failed", EACCES on master.lock)."""
    if root.stat().st_mode & 0o777 != 0o755:
        root.chmod(0o755)


def versions(root: Path) -> dict[str, str]:
    """The Debian package versions of Postfix and libtlsrpt in ``root``."""
    status = (root / "var/lib/dpkg/status").read_text(errors="replace")
    found: dict[str, str] = {}
    for paragraph in status.split("\n\n"):
        name = re.search(r"^Package: (\S+)", paragraph, re.M)
        version = re.search(r"^Version: (\S+)", paragraph, re.M)
        if name and version and name[1] in PACKAGES:
            found[name[1]] = version[1]
    return found


def main(argv: list[str]) -> int:
    """``ensure`` builds the root when needed; ``versions`` prints what it holds."""
    if argv[:1] not in (["ensure"], ["versions"]):
        print("usage: trixie.py ensure|versions", file=sys.stderr)
        return 2
    try:
        root = ensure_root() if argv[0] == "ensure" else root_path()
    except RootUnavailable as exc:
        print(f"trixie.py: {exc}", file=sys.stderr)
        return 1
    if argv[0] == "ensure":
        print(root)
    else:
        for name, version in versions(root).items():
            print(f"{name} {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
