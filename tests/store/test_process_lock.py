"""``tlsrpt_reporter.store.process_lock.ProcessLock`` on real files: one holder at a time, the lock
file's content is rewritten only by the process that holds it, and a link or a second name
planted at the lock's path is refused without touching what it points to."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tlsrpt_reporter.errors import StoreError
from tlsrpt_reporter.store.process_lock import LockedError, ProcessLock


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def test_the_holder_writes_its_pid_over_what_an_earlier_holder_left(tmp_path: Path) -> None:
    db = tmp_path / "reporter.sqlite"
    Path(f"{db}.lock").write_text("99999\nleft by a process that died\n")
    with ProcessLock(db) as lock:
        assert lock.path.read_text() == f"{os.getpid()}\n"


def test_a_process_turned_away_leaves_the_holders_content_alone(tmp_path: Path) -> None:
    db = tmp_path / "reporter.sqlite"
    with ProcessLock(db) as lock:
        # What the holder keeps there (its pid, here a marker no one else would write).
        lock.path.write_text("held by the first reporter\n")
        with pytest.raises(LockedError, match="another tlsrpt-reporter process holds"):
            ProcessLock(db).__enter__()
        assert lock.path.read_text() == "held by the first reporter\n"


@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_at_the_lock_path_is_refused_and_not_followed(
    tmp_path: Path, victim: Path, dangling: bool
) -> None:
    db = tmp_path / "reporter.sqlite"
    pointed = tmp_path / "not-there-yet" if dangling else victim
    Path(f"{db}.lock").symlink_to(pointed)
    with pytest.raises(StoreError) as caught:
        ProcessLock(db).__enter__()
    assert str(caught.value) == (
        f"lock file {db}.lock is a symbolic link: refusing to follow it; remove the link"
    )
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "not-there-yet").exists()


def test_a_second_name_of_another_file_at_the_lock_path_is_refused(
    tmp_path: Path, victim: Path
) -> None:
    db = tmp_path / "reporter.sqlite"
    os.link(victim, f"{db}.lock")  # truncating it would truncate the victim
    with pytest.raises(StoreError, match="is not a regular file with one name"):
        ProcessLock(db).__enter__()
    assert victim.read_text() == "precious\n"


def test_a_fifo_at_the_lock_path_is_refused_without_hanging(tmp_path: Path) -> None:
    db = tmp_path / "reporter.sqlite"
    os.mkfifo(f"{db}.lock")
    outcome: list[BaseException] = []

    def take() -> None:
        try:
            ProcessLock(db).__enter__()
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=take, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "opening the lock file hangs on a FIFO"
    assert len(outcome) == 1 and isinstance(outcome[0], StoreError)
    assert "is not a regular file with one name" in str(outcome[0])
