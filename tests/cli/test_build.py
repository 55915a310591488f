"""``tlsrpt-reporter build`` refuses a day that has not finished (its UTC end plus grace) unless
``--force``, and says when it will be ready (RFC 8460 §4.1: a report covers a whole day)."""

from __future__ import annotations

import datetime as dt

import pytest
from support.site import Site


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
