"""Writing files where another local user may have planted something first.

Output goes to directories the operator names (``build --out``, ``collectd.metrics_file``),
which may be writable by others (``/tmp``, a shared textfile directory). Nothing here follows a
symbolic link at the name of a file it writes, opens a file it did not create itself, or writes
under a temporary name someone could guess and plant a link at. :func:`make_directory` and
:func:`create` also refuse a symbolic link at the directory itself (a fresh ``--out /tmp/r`` is
a name anyone could have planted first); the directories above are the operator's choice and
are trusted, as is the directory of a file :func:`replace` keeps in a configured place.

Owns no paths of its own and words no errors: it raises OSError (``errno.ELOOP`` for a symbolic
link where a directory should be, FileExistsError for anything already at a name to create) and
the caller says what the file was for.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

# O_EXCL with O_CREAT fails on any existing name, a dangling symbolic link included (open(2));
# O_NOFOLLOW says so again for readers who do not remember that.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Random temporary names are tried this often before giving up (as tempfile does).
_ATTEMPTS = 100


def make_directory(path: str | os.PathLike[str]) -> None:
    """Create the directory ``path`` (and its parents) unless it exists; an existing symbolic
    link at ``path`` is an OSError with ``errno.ELOOP``, even when it points to a directory."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(target)
    os.close(_open_directory(target, follow=False))


def create(path: str | os.PathLike[str], data: bytes, mode: int = 0o666) -> None:
    """Write ``data`` into a new file ``path`` (``mode`` minus the umask).

    Raises FileExistsError when anything is at ``path`` (a file, a symbolic link: nothing is
    overwritten or followed), OSError with ``errno.ELOOP`` when its directory is a symbolic link.
    A file this call created and could not finish is removed.
    """
    target = Path(path)
    dir_fd = _open_directory(target.parent, follow=False)
    try:
        fd = os.open(target.name, _CREATE, mode, dir_fd=dir_fd)
        try:
            _write_all(fd, data)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(target.name, dir_fd=dir_fd)
            raise
        os.close(fd)
    finally:
        os.close(dir_fd)


def replace(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with a file holding ``data``: readers see the old or the new content,
    never a part of one, and a symbolic link at ``path`` is replaced, not followed.

    The content is written to a new file under a random name (a dot, the file's name, random
    hex, ``.tmp``) in the same directory, synced, and renamed over ``path``. Raises OSError; the
    temporary file is removed on failure.
    """
    target = Path(path)
    dir_fd = _open_directory(target.parent, follow=True)
    try:
        fd, tmp = _create_temporary(dir_fd, target.name, mode)
        try:
            try:
                _write_all(fd, data)
                # Before the rename: after a crash the name holds the old or the new content,
                # not an empty file.
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def _create_temporary(dir_fd: int, name: str, mode: int) -> tuple[int, str]:
    for _ in range(_ATTEMPTS):
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(tmp, _CREATE, mode, dir_fd=dir_fd), tmp
        except FileExistsError:
            continue  # someone's file, or a link planted there: never touched, another name
    raise FileExistsError(
        errno.EEXIST, f"no free temporary name for {name} after {_ATTEMPTS} tries"
    )


def _open_directory(path: Path, *, follow: bool) -> int:
    try:
        return os.open(path, _DIRECTORY if follow else _DIRECTORY | os.O_NOFOLLOW)
    except NotADirectoryError:
        # O_DIRECTORY | O_NOFOLLOW on a link says ENOTDIR: say what is really there.
        if path.is_symlink():
            raise OSError(errno.ELOOP, "is a symbolic link", str(path)) from None
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
