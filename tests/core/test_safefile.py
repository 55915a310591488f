"""``tlsrpt_reporter.safefile`` on a real file system: new files are created exclusively and never
through a link, a directory that is a link is refused, and a replaced file goes through a
temporary file under a random name that a planted link cannot catch."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from support.audit import watching

from tlsrpt_reporter import safefile


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file an attacker would like us to overwrite."""
    path = tmp_path / "victim"
    path.write_bytes(b"precious\n")
    path.chmod(0o600)
    return path


def untouched(victim: Path) -> bool:
    return victim.read_bytes() == b"precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600


def created_names(action: Any) -> list[str]:
    """The names ``action()`` opened with O_CREAT, in order."""
    names: list[str] = []

    def watch(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and isinstance(args[2], int) and args[2] & os.O_CREAT:
            names.append(os.fsdecode(args[0]))

    with watching(watch):
        action()
    return names


# --- create -----------------------------------------------------------------------------------


def test_create_writes_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json.gz"
    safefile.create(path, b"data" * 100_000)
    assert path.read_bytes() == b"data" * 100_000


def test_create_refuses_an_existing_file_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "r.json.gz"
    path.write_bytes(b"earlier")
    with pytest.raises(FileExistsError):
        safefile.create(path, b"new")
    assert path.read_bytes() == b"earlier"


@pytest.mark.parametrize("dangling", [False, True])
def test_create_never_follows_a_link_planted_at_the_name(
    tmp_path: Path, victim: Path, dangling: bool
) -> None:
    path = tmp_path / "out" / "r.json.gz"
    path.parent.mkdir()
    pointed = tmp_path / "not-there-yet" if dangling else victim
    path.symlink_to(pointed)
    with pytest.raises(FileExistsError):
        safefile.create(path, b"report")
    assert path.is_symlink() and untouched(victim)
    assert not (tmp_path / "not-there-yet").exists()


def test_create_refuses_a_directory_that_is_a_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere)
    with pytest.raises(OSError) as caught:
        safefile.create(tmp_path / "out" / "r.json.gz", b"report")
    assert caught.value.errno == errno.ELOOP
    assert list(elsewhere.iterdir()) == []


# --- make_directory ---------------------------------------------------------------------------


def test_make_directory_creates_parents_and_accepts_an_existing_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out"
    safefile.make_directory(path)
    safefile.make_directory(path)
    assert path.is_dir() and not path.is_symlink()


@pytest.mark.parametrize("dangling", [False, True])
def test_make_directory_refuses_a_link_even_to_a_directory(tmp_path: Path, dangling: bool) -> None:
    elsewhere = tmp_path / "elsewhere"
    if not dangling:
        elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere)
    with pytest.raises(OSError) as caught:
        safefile.make_directory(tmp_path / "out")
    assert caught.value.errno == errno.ELOOP
    assert dangling != elsewhere.exists()  # a dangling link's target is not created either


def test_make_directory_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("in the way")
    with pytest.raises(NotADirectoryError):
        safefile.make_directory(tmp_path / "out")


# --- replace ----------------------------------------------------------------------------------


def test_replace_writes_through_a_random_temporary_name_each_time(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    first = created_names(lambda: safefile.replace(path, b"one\n"))
    second = created_names(lambda: safefile.replace(path, b"two\n"))
    assert len(first) == len(second) == 1
    assert first != second  # not guessable from the name and the pid, as it once was
    for name in first + second:
        assert name.startswith(".m.prom.") and name.endswith(".tmp")  # never read as *.prom
        assert len(name) - len(".m.prom..tmp") == 16  # 64 random bits
    assert path.read_bytes() == b"two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.prom"]


def test_replace_ignores_a_link_planted_at_the_old_predictable_name(
    tmp_path: Path, victim: Path
) -> None:
    path = tmp_path / "m.prom"
    planted = tmp_path / f".m.prom.{os.getpid()}.tmp"  # the name used before: pid-based
    planted.symlink_to(victim)
    safefile.replace(path, b"metrics\n")
    assert path.read_bytes() == b"metrics\n"
    assert untouched(victim) and planted.is_symlink()


def test_replace_takes_another_name_when_the_random_one_is_taken(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guessing 64 random bits cannot be provoked: the random source repeats one value first.
    tokens = iter(["0" * 16, "0" * 16, "1" * 16])
    monkeypatch.setattr(safefile.secrets, "token_hex", lambda _n: next(tokens))
    planted = tmp_path / f".m.prom.{'0' * 16}.tmp"
    planted.symlink_to(victim)
    safefile.replace(tmp_path / "m.prom", b"metrics\n")
    assert (tmp_path / "m.prom").read_bytes() == b"metrics\n"
    assert untouched(victim) and planted.is_symlink()


def test_replace_replaces_a_link_at_the_name_instead_of_writing_through_it(
    tmp_path: Path, victim: Path
) -> None:
    path = tmp_path / "m.prom"
    path.symlink_to(victim)
    safefile.replace(path, b"metrics\n")
    assert not path.is_symlink() and path.read_bytes() == b"metrics\n"
    assert untouched(victim)


def test_replace_in_a_missing_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        safefile.replace(tmp_path / "missing" / "m.prom", b"x")
    assert list(tmp_path.iterdir()) == []


def test_replace_that_cannot_rename_removes_its_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "m.prom").mkdir()  # a directory at the name: the rename fails
    with pytest.raises(IsADirectoryError):
        safefile.replace(tmp_path / "m.prom", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["m.prom"]


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old
