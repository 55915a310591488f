"""``tlsrpt-reporter build`` refuses a day that has not finished (its UTC end plus grace) unless
``--force``, and says when it will be ready (RFC 8460 §4.1: a report covers a whole day)."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from support.site import DAY, Site


def test_build_refuses_a_day_that_has_not_finished_and_says_when_it_is_ready(site: Site) -> None:
    site.config.write_text(site.config.read_text().replace("grace = 0", "grace = 5400"))
    today = dt.datetime.now(dt.UTC).date()
    out = site.tmp / "out"
    refused = site.cli("build", "--day", today.isoformat(), "--out", str(out))
    assert refused.returncode == 2, refused.stderr
    ready = f"{today + dt.timedelta(days=1)} 01:30 UTC"
    assert f"{today} has not finished: it is ready to build at {ready}" in refused.stderr
    assert "reporter.grace, 5400 s" in refused.stderr and "--force" in refused.stderr
    assert not out.exists()
    forced = site.cli("build", "--day", today.isoformat(), "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"{today}: 0 reports written" in forced.stdout


def test_build_refuses_the_day_before_until_grace_has_passed(site: Site) -> None:
    now = dt.datetime.now(dt.UTC)
    yesterday = (now - dt.timedelta(days=1)).date().isoformat()
    # Grace reaching past now: yesterday is not finished yet, whatever the hour.
    seconds = now.hour * 3600 + now.minute * 60 + now.second + 3600
    site.config.write_text(site.config.read_text().replace("grace = 0", f"grace = {seconds}"))
    refused = site.cli("build", "--day", yesterday, "--out", str(site.tmp / "out"))
    assert refused.returncode == 2
    assert f"{yesterday} has not finished" in refused.stderr


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_build_into_a_path_that_cannot_be_written_is_one_line(site: Site, where: str) -> None:
    # Exit 1: like any file this host cannot write (docs/operating.md), not a usage error.
    blocker = site.tmp / "blocker"
    blocker.write_text("in the way\n")
    out = blocker if where == "a file" else blocker / "out"
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    result = site.cli("build", "--day", yesterday, "--out", str(out), "--force")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot write" in lines[0] and str(blocker) in lines[0], lines


# --- files an attacker on the host could steer (--out /tmp/r is a name anyone can plant) ------


def _build(site: Site, out: Path) -> subprocess.CompletedProcess[str]:
    return site.cli("build", "--day", DAY, "--out", str(out))


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_build_refuses_an_out_directory_that_is_a_link(site: Site) -> None:
    elsewhere = site.tmp / "elsewhere"
    elsewhere.mkdir()
    out = site.tmp / "out"
    out.symlink_to(elsewhere)
    line = _one_line(_build(site, out))
    assert line.endswith(
        f"build --out: {out} is a symbolic link: refusing to write through it; give the "
        "directory it points to"
    ), line
    assert list(elsewhere.iterdir()) == []


def _fixed_instance(site: Site) -> None:
    """A fixed instance id: the next build's file names are the last one's (else every dry run
    without state takes a random one)."""
    site.config.write_text(
        site.config.read_text().replace("grace = 0", 'grace = 0\ninstance_id = "dry"')
    )


def test_build_never_writes_through_a_link_planted_at_a_report_name(site: Site) -> None:
    _fixed_instance(site)
    assert _build(site, site.tmp / "first").returncode == 0
    names = sorted(p.name for p in (site.tmp / "first").iterdir())
    victim = site.tmp / "victim"
    victim.write_text("precious\n")
    gz = next(n for n in names if n.endswith(".json.gz"))
    eml = next(n for n in names if n.endswith(".eml"))
    for n, name in enumerate((gz, eml)):
        out = site.tmp / f"planted-{n}"
        out.mkdir()
        (out / name).symlink_to(victim)
        line = _one_line(_build(site, out))
        assert line.endswith(
            f"build --out: {out / name} already exists: refusing to overwrite or follow it; "
            "give a new or empty directory"
        ), line
        assert victim.read_text() == "precious\n" and (out / name).is_symlink()


def test_build_refuses_to_overwrite_an_earlier_build(site: Site) -> None:
    _fixed_instance(site)
    out = site.tmp / "out"
    assert _build(site, out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    line = _one_line(_build(site, out))
    assert "already exists: refusing to overwrite or follow it" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
