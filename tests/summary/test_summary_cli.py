"""``tlsrpt-reporter summary`` on a real site after a real ``send``: the JSON numbers agree with
the databases, the terminal tables show them, the page is written after each send when
reporter.summary_html is set, and an empty site says "nothing collected yet"."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from summary_site import Week, day, truth


def _json(week: Week, *args: str) -> dict[str, Any]:
    result = week.site.cli("summary", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_send_delivered_retried_and_gave_up_as_the_site_intends(week: Week) -> None:
    # The fixture's premise: without it the numbers below would prove little.
    assert week.send.returncode == 0, week.send.stderr
    states = {state for st in week.site.deliveries().values() for state in [st[0]]}
    assert {"sent", "failed-retrying", "given-up"} <= states


def test_json_numbers_agree_with_the_databases(week: Week) -> None:
    s = _json(week)
    t = truth(week.site, s["first_day"], s["last_day"])
    assert (s["first_day"], s["last_day"]) == (day(29), day(0))
    assert s["sessions"] == sum(n for n, _ in t.per_day.values())
    assert s["failures"] == sum(f for _, f in t.per_day.values())
    shown_days = {d["day"]: (d["sessions"], d["failures"]) for d in s["days"] if d["sessions"]}
    assert shown_days == t.per_day
    assert len(s["days"]) == 30
    domains = {d["domain"]: (d["sessions"], d["failures"]) for d in s["domains"]}
    assert domains == t.per_domain
    assert s["domain_count"] == len(t.per_domain)
    assert s["failing_domain_count"] == sum(1 for _, f in t.per_domain.values() if f)
    assert {r["result_type"]: r["failures"] for r in s["result_types"]} == t.result_types
    reports = s["reports"]
    assert reports["built"] == sum(t.report_statuses.values())
    assert reports["delivered"] == t.report_statuses.get("delivered", 0)
    assert reports["given_up"] == t.report_statuses.get("given-up", 0)
    assert reports["pending"] == t.report_statuses.get("pending", 0)
    for d in s["destinations"]:
        states = t.destinations[d["destination"]]
        assert d["reports"] == sum(states.values())
        assert d["sent"] == states.get("sent", 0)
        assert d["retrying"] == states.get("failed-retrying", 0)
        assert d["given_up"] == states.get("given-up", 0)
    assert s["destination_count"] == len(t.destinations)
    # The next report is the earliest stored due time (a retry or a report to resolve).
    due = [x for x in (t.next_delivery, t.next_report) if x is not None]
    assert s["next_send"]["at"] == min(due)


def test_the_changes_name_the_domains_that_started_and_stopped_failing(week: Week) -> None:
    s = _json(week)
    assert s["day"] == day(1)  # the last finished day, not today's part of a day
    assert [c["domain"] for c in s["newly_failing"]] == ["web.example", "new.example"]
    assert s["newly_failing"][1]["previous_day"] is None
    assert [c["domain"] for c in s["recovered"]] == ["mail.example"]
    assert s["recovered"][0]["previous_failures"] == 3


def test_result_types_carry_inspects_explanation(week: Week) -> None:
    from tlsrpt_reporter.report.result_types import ADVICE

    for row in _json(week)["result_types"]:
        assert row["cause"] == ADVICE[row["result_type"]].cause
        assert row["fix"] == ADVICE[row["result_type"]].fix


def test_a_day_in_the_past_narrows_the_window_to_the_days_before_it(week: Week) -> None:
    s = _json(week, "--day", day(3), "--days", "2")
    t = truth(week.site, day(4), day(3))
    assert (s["first_day"], s["last_day"], s["day"]) == (day(4), day(3), day(3))
    assert s["sessions"] == sum(n for n, _ in t.per_day.values())
    assert s["reports"]["built"] == sum(t.report_statuses.values())


def test_the_text_form_shows_the_numbers_in_rich_tables(week: Week) -> None:
    result = week.site.cli("summary")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    s = _json(week)
    t = truth(week.site, s["first_day"], s["last_day"])
    for domain, (sessions, failures) in t.per_domain.items():
        rate = f"{100 * failures / sessions:.2f} %"
        assert re.search(rf"^ {re.escape(domain)}\s+{sessions}\s+{failures}\s+{rate}", out, re.M)
    for d, (sessions, failures) in t.per_day.items():
        assert re.search(rf"^ {d}( \(running\))?\s+{sessions}\s+{failures}\s", out, re.M)
    assert re.search(r"^ certificate-expired\s+\d+\s+\d+\s+1\s+The certificate the MX", out, re.M)
    assert "newly failing on " + day(1) in out and "recovered on " + day(1) in out
    assert re.search(r"^ https://evil\.test/collect\s+6\s+0\s+0\s+0\s+6\s+POST", out, re.M)
    assert "next report: " in out


def test_send_writes_the_page_when_summary_html_is_set(week: Week) -> None:
    page = (week.page_dir / "index.html").read_text()
    s = _json(week)
    assert f'id="sessions" data-value="{s["sessions"]}"' in page
    assert 'data-domain="web.example"' in page
    assert (week.page_dir / "index.html").stat().st_mode & 0o777 == 0o644


def test_html_option_writes_the_page_and_keeps_json_on_stdout(week: Week, tmp_path: Path) -> None:
    result = week.site.cli("summary", "--format", "json", "--html", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)
    assert f"summary page written to {tmp_path / 'out' / 'index.html'}" in result.stderr
    assert "<svg" in (tmp_path / "out" / "index.html").read_text()


def test_an_empty_site_says_nothing_collected_yet_and_succeeds(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[collectd]\ndb = "{tmp_path}/collectd.sqlite"\n'
        f'[reporter]\ndb = "{tmp_path}/reporter.sqlite"\n'
    )
    cmd = [sys.executable, "-m", "tlsrpt_reporter.cli", "summary", "--config", str(config)]
    result = subprocess.run([*cmd, "--html", str(tmp_path / "page")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "nothing collected yet" in result.stdout
    assert 'id="nothing"' in (tmp_path / "page" / "index.html").read_text()
    # Read-only: no state database appears for looking.
    assert not (tmp_path / "reporter.sqlite").exists()
    as_json = subprocess.run([*cmd, "--format", "json"], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert json.loads(as_json.stdout)["empty"] is True


def test_a_bad_summary_html_value_is_one_line_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[reporter]\nsummary_html = 5\n")
    cmd = [sys.executable, "-m", "tlsrpt_reporter.cli", "summary", "--config", str(config)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "reporter.summary_html" in result.stderr


def test_an_unwritable_page_directory_fails_the_send_in_one_line(week: Week) -> None:
    blocker = week.site.tmp / "blocker"
    blocker.write_text("a file where the directory should be")
    config = week.site.tmp / "blocked.toml"
    text = week.site.config.read_text().replace(str(week.page_dir), str(blocker / "sub"))
    config.write_text(text)
    result = week.site.cli("send", config=config)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "summary_html" in line]
    assert len(lines) == 1 and str(blocker / "sub") in lines[0], result.stderr


def test_days_must_be_a_positive_count(week: Week) -> None:
    result = week.site.cli("summary", "--days", "0")
    assert result.returncode == 2 and "--days" in result.stderr
