"""Several MTA hosts, one reporter: database and ``cmd:`` sources, merged before building; a
failing source postpones its day until ``source_deadline``."""

from __future__ import annotations

import gzip
import json
import random
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.collector import Collector, send_all, today

from tlsrpt_reporter.cli import commands
from tlsrpt_reporter.config.load import load
from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.config.source_syntax import command_words
from tlsrpt_reporter.demo.run import sample_path
from tlsrpt_reporter.errors import ConfigError
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.wire.encode import datagram

PY = shlex.quote(sys.executable)
PAST_DAY = "2026-03-01"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def export_cmd(db: Path) -> str:
    """A cmd: source reading another host's database, the way ssh would run it there."""
    return f"cmd:{PY} -m tlsrpt_reporter.cli export --db {shlex.quote(str(db))} --day {{day}}"


def reporter_config(path: Path, source_list: list[str], **extra: object) -> Path:
    lines = [
        "[reporter]",
        'organization_name = "Example Mail Ltd"',
        'contact_info = "tlsrpt@example.net"',
        f'db = "{path.parent / (path.stem + "-state.sqlite")}"',
        f"sources = {json.dumps(source_list)}",
        # One instance id for every configuration: their reports are compared byte for byte.
        'instance_id = "merge"',
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def built_reports(config: Path, day: str, out: Path) -> dict[str, Any]:
    # The collectors stamped today's date: --force builds the day before it has finished.
    result = cli("build", "--config", str(config), "--day", day, "--out", str(out), "--force")
    assert result.returncode == 0, result.stderr
    return {p.name: json.loads(gzip.decompress(p.read_bytes())) for p in sorted(out.glob("*.gz"))}


def test_three_collectors_merge_into_what_one_collector_of_everything_reports(
    make_collector: Callable[..., Collector], tmp_path: Path
) -> None:
    sample = [line for line in sample_path().read_bytes().splitlines() if line]
    hosts = [make_collector(f"mta{i}").start() for i in range(3)]
    everything = make_collector("all").start()
    # Each session went out through one of three MTAs; one collector also saw all of them.
    for i, host in enumerate(hosts):
        send_all(host.socket, sample[i::3])
    send_all(everything.socket, sample)
    for c in (*hosts, everything):
        assert c.stop() == 0
    merged_cfg = reporter_config(
        tmp_path / "merged.toml",
        [str(hosts[0].db), export_cmd(hosts[1].db), export_cmd(hosts[2].db)],
    )
    single_cfg = reporter_config(tmp_path / "single.toml", [str(everything.db)])
    merged = built_reports(merged_cfg, today(), tmp_path / "merged")
    single = built_reports(single_cfg, today(), tmp_path / "single")
    assert len(single) > 250  # the sample's domains
    assert merged == single
    # and the counts really are spread over the hosts: no host alone has them all
    alone = built_reports(
        reporter_config(tmp_path / "one.toml", [str(hosts[0].db)]), today(), tmp_path / "one"
    )
    assert alone != single


def stored_day(tmp_path: Path, name: str, domains: list[str]) -> Path:
    """A collector database holding one past day of sessions for ``domains``."""
    log = tmp_path / f"{name}.jsonl"
    lines = [
        datagram(d, [{"policy-type": 9, "policy-domain": d, "t": 0, "f": 0}])[:-1]
        + f',"ts": "{PAST_DAY}T12:00:00Z"}}'.encode()
        for d in domains
    ]
    log.write_bytes(b"\n".join(lines) + b"\n")
    db = tmp_path / f"{name}.sqlite"
    assert cli("replay", str(log), "--into-db", str(db)).returncode == 0
    return db


def config_for(tmp_path: Path, source_list: list[str], **extra: object) -> ReporterConfig:
    path = reporter_config(tmp_path / "r.toml", source_list, **extra)
    return load(str(path)).reporter


def test_a_failing_source_postpones_the_day_until_the_deadline(tmp_path: Path) -> None:
    good = stored_day(tmp_path, "good", ["a.example", "b.example"])
    cfg = config_for(
        tmp_path, [str(good), f"cmd:{PY} -c 'import sys; sys.exit(\"mta2: connection refused\")'"],
        grace=0, source_deadline=3600,
    )  # fmt: skip
    conn = state.connect(cfg.db)
    end = timing.day_end(PAST_DAY)
    rng = random.Random(1)
    # (the two days before, asked of the command source too, are past their deadline already)
    assert PAST_DAY not in [r.day for r in schedule.build_due(cfg, conn, end + 600, rng)]
    assert not state.is_built(conn, PAST_DAY)
    results = schedule.build_due(cfg, conn, end + 3601, rng)
    assert [(r.day, r.reports) for r in results] == [(PAST_DAY, 2)]
    assert state.is_built(conn, PAST_DAY)
    note = conn.execute("SELECT note FROM built_day WHERE day = ?", (PAST_DAY,)).fetchone()[0]
    assert "mta2: connection refused" in note and "exit status 1" in note
    assert commands.status_rows(conn, PAST_DAY)[0]["note"] == note
    conn.close()


def test_a_source_that_answers_later_is_included(tmp_path: Path) -> None:
    good = stored_day(tmp_path, "good", ["a.example"])
    late = stored_day(tmp_path, "late", ["a.example", "c.example"])
    flag = tmp_path / "mta2-up"
    # "ssh" to a host that is down until the flag file exists
    script = (
        f"import os, subprocess, sys; os.path.exists({str(flag)!r}) or sys.exit('down'); "
        f"sys.exit(subprocess.call([sys.executable, '-m', 'tlsrpt_reporter.cli', 'export', "
        f"'--db', {str(late)!r}, '--day', sys.argv[1]]))"
    )
    cfg = config_for(tmp_path, [str(good), f"cmd:{PY} -c {shlex.quote(script)} {{day}}"], grace=0)
    conn = state.connect(cfg.db)
    end = timing.day_end(PAST_DAY)
    assert PAST_DAY not in [
        r.day for r in schedule.build_due(cfg, conn, end + 60, random.Random(1))
    ]
    flag.touch()
    results = schedule.build_due(cfg, conn, end + 120, random.Random(1))
    assert [(r.day, r.reports) for r in results] == [(PAST_DAY, 2)]
    gz = dict(conn.execute("SELECT domain, gzip FROM report"))
    doc = json.loads(gzip.decompress(gz["a.example"]))
    assert doc["policies"][0]["summary"]["total-successful-session-count"] == 2
    conn.close()


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (f"cmd:{PY} -c 'print(\"not json\")'", "line 1: not JSON"),
        (f"cmd:{PY} -c 'print(\"{{}}\")'", "line 1: day None is not the day asked for"),
        ("cmd:/nonexistent/ssh mta2", "cannot run /nonexistent/ssh"),
        (f"cmd:{PY} -c 'import time; time.sleep(30)'", "no complete answer within 0.5 s"),
        (
            f'cmd:{PY} -c \'import json; print(json.dumps({{"day": "{PAST_DAY}", '
            f'"domain": "x.example", "record": "", "policy": {{"policy-type": '
            f'"sts", "policy-domain": "x.example"}}, "summary": '
            f'{{"total-successful-session-count": -1, "total-failure-session-count": 0}}}}))\'',
            "summary must hold two session counts >= 0",
        ),
        (
            f'cmd:{PY} -c \'import json; print(json.dumps({{"day": "{PAST_DAY}", '
            f'"domain": "x.example", "record": "", "policy": {{"policy-type": '
            f'"dane", "policy-domain": "x.example"}}}}))\'',
            "unknown policy-type 'dane'",
        ),
    ],
)
def test_a_broken_command_source_fails_whole_with_the_reason(command: str, message: str) -> None:
    data = sources.read_day([command], PAST_DAY, timeout=0.5)
    assert data.lines == []
    assert len(data.failed_sources) == 1 and message in data.failed_sources[0]


def test_command_output_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_OUTPUT", 100_000)
    flood = f"cmd:{PY} -c 'import sys\nwhile True: sys.stdout.write(\"x\" * 65536)'"
    data = sources.read_day([flood], PAST_DAY, timeout=30)
    assert "more than 100000 bytes of output (killed)" in data.failed_sources[0]


def test_day_is_substituted_after_splitting_so_it_stays_one_word(tmp_path: Path) -> None:
    words = command_words("cmd:ssh 'mta 2' tlsrpt-reporter export --day {day}", PAST_DAY)
    assert words == ["ssh", "mta 2", "tlsrpt-reporter", "export", "--day", PAST_DAY]
    bad = reporter_config(tmp_path / "bad.toml", ["cmd:ssh 'mta2"])
    with pytest.raises(ConfigError, match="cannot split the command"):
        load(str(bad))
    checked = cli("check-config", "--config", str(bad))
    assert checked.returncode == 2 and "cannot split the command" in (
        checked.stdout + checked.stderr
    )


def test_command_sources_are_asked_for_the_last_finished_days() -> None:
    now = timing.day_end(PAST_DAY) + 3600  # 01:00 on the next day
    days = sources.days_with_data(["cmd:true"], now)
    assert days == ["2026-02-27", "2026-02-28", PAST_DAY]
