"""``ingest-log FILE`` remembers what it read: a rerun adds nothing, a grown file adds its new
lines, a renamed, copied or compressed file read before adds only what was not read of it; a
wrong ``--format`` is an error that marks nothing as read."""

from __future__ import annotations

import gzip
import shutil
import threading
from pathlib import Path

import pytest
from test_logfile import (
    DAY,
    Follower,
    append,
    cli,
    sample_lines,
    stored,
    tls,
    to,
    wait_for,
)
from test_logfile import follower as follower  # noqa: PLC0414 - the fixture, for these tests

from tlsrpt_reporter.errors import InputError
from tlsrpt_reporter.ingest.identity import HEAD_BYTES
from tlsrpt_reporter.ingest.logfile import follow, ingest_files


def ingest(db: Path, *logs: Path, fmt: str = "postfix") -> tuple[str, ...]:
    """Run ``ingest-log`` in-process; the notes of what was skipped."""
    return ingest_files([str(p) for p in logs], fmt, str(db), "UTC").notes


def test_a_rerun_adds_nothing_and_says_what_it_skipped(tmp_path: Path) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    append(log, sample_lines("a", 3))
    r = cli("ingest-log", "--format", "postfix", "--timezone", "UTC", str(log), "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert stored(db) == {"a.test": (3, 0)}
    again = cli("ingest-log", "--format", "postfix", "--timezone", "UTC", str(log), "--db", str(db))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "0 lines read, 0 sessions stored; days: none; lines by kind: none",
        f"  skipped {log}: read before, all {log.stat().st_size} bytes",
    ]
    assert stored(db) == {"a.test": (3, 0)}


def test_a_grown_file_adds_only_its_new_lines(tmp_path: Path) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    append(log, sample_lines("a", 3))
    ingest(db, log)
    size = log.stat().st_size
    append(log, sample_lines("a", 2, start=3) + sample_lines("b", 1))
    assert ingest(db, log) == (f"resumed {log} at byte {size}: the bytes before were read before",)
    assert stored(db) == {"a.test": (5, 0), "b.test": (1, 0)}


def test_a_connection_split_across_two_runs_is_counted_once(tmp_path: Path) -> None:
    """The adapter's open connections are saved with the position, as for --follow."""
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    append(log, [tls(4000, "Verified", "mx.s.test", "192.0.2.1")])
    append(log, sample_lines("a", 1))
    ingest(db, log)
    append(log, [to(4000, "Q4", "x@s.test", "mx.s.test", "192.0.2.1", "sent (250 Ok)")])
    ingest(db, log)
    assert stored(db) == {"a.test": (1, 0), "s.test": (1, 0)}


def test_rotation_by_rename_and_compression_is_recognised_by_content(tmp_path: Path) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    append(log, sample_lines("a", 3))
    ingest(db, log)
    append(log, sample_lines("a", 1, start=3))  # written after that run, before rotation
    log.rename(tmp_path / "mail.log.1")
    append(log, sample_lines("b", 2))
    ingest(db, tmp_path / "mail.log.1", log)
    assert stored(db) == {"a.test": (4, 0), "b.test": (2, 0)}
    # Rotated again and compressed: both read before, nothing new in either.
    with (
        (tmp_path / "mail.log.1").open("rb") as src,
        gzip.open(tmp_path / "mail.log.2.gz", "wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    (tmp_path / "mail.log.1").unlink()
    log.rename(tmp_path / "mail.log.1")
    notes = ingest(db, tmp_path / "mail.log.2.gz", tmp_path / "mail.log.1")
    assert [n.split(":")[0] for n in notes] == [
        f"skipped {tmp_path / 'mail.log.2.gz'}",
        f"skipped {tmp_path / 'mail.log.1'}",
    ]
    assert stored(db) == {"a.test": (4, 0), "b.test": (2, 0)}


def test_a_copy_truncate_rotation_reads_the_copy_on_and_the_new_file_whole(
    tmp_path: Path,
) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    append(log, sample_lines("a", 2))
    ingest(db, log)
    append(log, sample_lines("a", 1, start=2))
    shutil.copy(log, tmp_path / "mail.log.1")  # logrotate's copytruncate
    log.write_text("")
    append(log, sample_lines("c", 1))
    ingest(db, tmp_path / "mail.log.1", log)
    assert stored(db) == {"a.test": (3, 0), "c.test": (1, 0)}


def test_a_last_line_without_newline_waits_for_the_next_run(tmp_path: Path) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    line = to(1000, "Q0", "u0@a.test", "mx.a.test", "192.0.2.1", "sent (250 Ok)")
    append(log, [tls(1000, "Verified", "mx.a.test", "192.0.2.1")])
    with log.open("a") as fh:
        fh.write(line[:40])  # the MTA is writing it
    assert ingest(db, log) == (f"left the last line of {log} for the next run: no newline yet",)
    assert stored(db) == {}
    with log.open("a") as fh:
        fh.write(line[40:] + "\n")
    ingest(db, log)
    assert stored(db) == {"a.test": (1, 0)}


def test_a_file_that_changed_before_the_offset_is_read_again(tmp_path: Path) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    lines = sample_lines("a", 40)
    append(log, lines)
    ingest(db, log)
    # Same first bytes, different text after them (not a log that only grows).
    # The first 60 lines are more than the identity's first bytes, so it is known again.
    assert len("\n".join(lines[:60])) > HEAD_BYTES
    log.write_text("\n".join(lines[:60] + sample_lines("z", 38, start=100)) + "\n")
    notes = ingest(db, log)
    assert notes[0].startswith(f"read {log} again from the start: it begins like a file read")
    assert stored(db)["z.test"] == (38, 0)


def test_the_same_file_twice_in_one_run_counts_once(tmp_path: Path) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    append(log, sample_lines("a", 2))
    ingest(db, log, log)
    assert stored(db) == {"a.test": (2, 0)}


@pytest.mark.parametrize(
    ("given", "actual", "hint"),
    [("exim", "postfix", "they look like postfix's: use --format postfix"),
     ("postfix", "exim", "they look like exim's: use --format exim")],
)  # fmt: skip
def test_a_wrong_format_is_an_error_and_marks_nothing_read(
    tmp_path: Path, given: str, actual: str, hint: str
) -> None:
    source = Path(__file__).parent.parent / "data"
    log = source / ("postfix-3.7-tls.log" if actual == "postfix" else "exim-4.96-tls.log")
    db = tmp_path / "c.sqlite"
    r = cli("ingest-log", "--format", given, "--timezone", "UTC", str(log), "--db", str(db))
    assert r.returncode == 2, (r.stdout, r.stderr)
    (line,) = r.stderr.splitlines()
    assert f"is a {given} log line; {hint} (nothing was stored or remembered)" in line
    ok = cli("ingest-log", "--format", actual, "--timezone", "UTC", str(log), "--db", str(db))
    assert ok.returncode == 0, ok.stderr
    assert "skipped" not in ok.stdout and stored(db, "2026-11-30")


def test_a_file_with_no_mail_log_line_at_all_is_an_error(tmp_path: Path) -> None:
    log, db = tmp_path / "auth.log", tmp_path / "c.sqlite"
    log.write_text(f"{DAY}T10:00:00Z host sshd[1]: Accepted publickey for root\n" * 3)
    with pytest.raises(InputError, match=r"none of the 3 lines read is a postfix log line; check"):
        ingest(db, log)


def test_follow_goes_on_from_where_a_plain_run_stopped(
    tmp_path: Path, follower: list[Follower]
) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    append(log, sample_lines("a", 3))
    ingest(db, log)
    f = Follower(log, db)
    follower.append(f)
    assert f.following_from() == log.stat().st_size
    append(log, sample_lines("b", 1))
    wait_for(lambda: stored(db).get("b.test") == (1, 0))
    f.stop()
    assert stored(db) == {"a.test": (3, 0), "b.test": (1, 0)}
    # And the other way: a plain run after the follower adds nothing.
    assert ingest(db, log)[0].startswith(f"skipped {log}: read before")
    assert stored(db) == {"a.test": (3, 0), "b.test": (1, 0)}


def test_follow_refuses_a_file_followed_as_another_format(
    tmp_path: Path, follower: list[Follower]
) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "c.sqlite"
    append(log, sample_lines("a", 1))
    f = Follower(log, db)
    follower.append(f)
    wait_for(lambda: stored(db).get("a.test") == (1, 0))
    f.stop()
    r = cli("ingest-log", "--format", "exim", "--follow", str(log), "--db", str(db))
    assert r.returncode == 2
    assert f"{log} was read as postfix before, not exim: use --format postfix" in r.stderr


def test_follow_stops_on_a_log_of_the_other_format(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    log = Path(__file__).parent.parent / "data" / "postfix-3.7-tls.log"
    copy = tmp_path / "mainlog"
    shutil.copy(log, copy)
    stop = threading.Event()
    with pytest.raises(InputError, match="use --format postfix"):
        follow(str(copy), "exim", str(db), "UTC", stop=stop)
    assert stored(db, "2026-11-30") == {}
