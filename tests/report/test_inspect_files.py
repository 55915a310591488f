"""``inspect`` on several files and folders: one line per file, a summary line, exit 0 only when
every file is valid."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_inspect_render import VALID, valid

from tlsrpt_reporter import cli


def run(capsys: pytest.CaptureFixture[str], *paths: Path | str) -> tuple[int, list[str], str]:
    code = cli.main(["inspect", *(str(p) for p in paths), "--offline"])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def folder_of_reports(root: Path) -> Path:
    """Reports in every form, one invalid, one not a report, and files that are not looked at."""
    folder = root / "reports"
    (folder / "sub" / "deeper").mkdir(parents=True)
    text = json.dumps(VALID).encode()
    (folder / "a.json").write_bytes(text)
    (folder / "b.json.gz").write_bytes(gzip.compress(text))
    (folder / "sub" / "c.gz").write_bytes(gzip.compress(text))
    broken = valid()
    del broken["policies"]
    (folder / "sub" / "deeper" / "d.JSON").write_text(json.dumps(broken))
    (folder / "sub" / "e.eml").write_text("Subject: hi\n\nno report here\n")
    (folder / "notes.txt").write_text("not a report, not looked at")
    (folder / "sub" / "f.json.gz.part").write_bytes(b"partial download")
    return folder


def test_a_folder_is_searched_in_name_order_one_line_per_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_of_reports(tmp_path)
    code, lines, err = run(capsys, folder)
    assert code == 1, err
    names = [line.split(": ", 1)[0] for line in lines[:-1]]
    assert names == [
        str(folder / "a.json"),
        str(folder / "b.json.gz"),
        str(folder / "sub" / "c.gz"),
        str(folder / "sub" / "deeper" / "d.JSON"),
        str(folder / "sub" / "e.eml"),
    ]
    about = "valid, Other Provider Inc., from 2026-02-28T00:00:00Z, 2 policies"
    assert lines[0] == f"{folder / 'a.json'}: {about}"
    assert lines[1] == f"{folder / 'b.json.gz'}: {about}"
    assert (
        lines[3] == f"{folder / 'sub/deeper/d.JSON'}: INVALID, $: 'policies' is a required property"
    )
    assert lines[4].startswith(f"{folder / 'sub/e.eml'}: INVALID, no report read: a mail message")
    assert lines[-1] == "5 files: 3 valid, 2 invalid"


def test_all_valid_files_exit_zero_and_files_and_folders_mix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    one, two = tmp_path / "one.json", tmp_path / "in" / "two.json.gz"
    one.write_text(json.dumps(VALID))
    two.write_bytes(gzip.compress(json.dumps(VALID).encode()))
    code, lines, _ = run(capsys, one, tmp_path / "in")
    assert code == 0
    assert len(lines) == 3 and lines[-1] == "2 files: 2 valid, 0 invalid"
    # One folder holding one file is still a listing, with its summary.
    code, lines, _ = run(capsys, tmp_path / "in")
    assert code == 0 and lines[-1] == "1 file: 1 valid, 0 invalid"


def test_warnings_are_counted_on_the_files_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = valid()
    doc["date-range"]["start-datetime"] = "2026-02-28T00:00:00.000+00:00"
    (tmp_path / "w.json").write_text(json.dumps(doc))
    (tmp_path / "v.json").write_text(json.dumps(VALID))
    code, lines, _ = run(capsys, tmp_path / "w.json", tmp_path / "v.json")
    assert code == 0
    assert lines[0].startswith(f"{tmp_path / 'w.json'}: valid, 1 warning(s), Other Provider")


def test_an_unreadable_file_is_one_invalid_line_not_the_end_of_the_run(shared_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test drops privileges with setpriv and must run as root (CI does)")
    locked = shared_dir / "locked.json"
    locked.write_text(json.dumps(VALID))
    locked.chmod(0o600)  # root's; nobody may not read it
    (shared_dir / "ok.json").write_text(json.dumps(VALID))
    (shared_dir / "ok.json").chmod(0o644)
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-m", "tlsrpt_reporter.cli", "inspect", "--offline", str(shared_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stderr
    assert lines[0].startswith(f"{locked}: INVALID, no report read: cannot read {locked}")
    assert lines[-1] == "2 files: 1 valid, 1 invalid"


def test_a_file_past_the_size_limit_is_invalid_in_a_listing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlsrpt_reporter.report import inspect_files

    monkeypatch.setattr(inspect_files, "MAX_FILE_BYTES", 100)  # not 50 MB of test data
    (tmp_path / "big.json").write_text(json.dumps(VALID))
    (tmp_path / "ok.json").write_text("{}")
    code, lines, _ = run(capsys, tmp_path)
    assert code == 1
    assert "big.json: INVALID, no report read: " in lines[0]
    assert "is larger than 100 bytes" in lines[0]


def test_an_empty_folder_and_a_missing_path_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("nothing to see")
    code, lines, err = run(capsys, tmp_path / "empty")
    assert code == 2 and lines == []
    assert "no report files (.json, .json.gz, .gz, .eml) under" in err
    code, lines, err = run(capsys, tmp_path / "empty", tmp_path / "absent")
    assert code == 2 and lines == []
    assert f"{tmp_path / 'absent'} is not a file or folder" in err


def test_names_from_the_disk_cannot_drive_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "evil\x1b[2J.json").write_text(json.dumps(VALID))
    (tmp_path / "ok.json").write_text(json.dumps(VALID))
    _, lines, _ = run(capsys, tmp_path)
    assert all("\x1b" not in line for line in lines)
    assert lines[0].startswith(f"{tmp_path}/evil?[2J.json: valid")
