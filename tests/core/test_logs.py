"""``tlsrpt_reporter.logs`` directly: the one-line log format on a terminal and under journald,
the ``RepeatLimiter`` that keeps rejected datagrams from flooding the journal, the collapsing of
alike warnings into one line with a count, and ``Progress`` (a rich bar with rate and ETA on a
real pty, a plain line now and then elsewhere)."""

from __future__ import annotations

import calendar
import logging
import os
import re
import sys
import time
from collections.abc import Iterator

import pytest
from support import pty_run

from tlsrpt_reporter import logs
from tlsrpt_reporter.logs import Progress, RepeatLimiter

TERMINAL_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (?P<name>\S+)\[(?P<pid>\d+)\] (?P<level>[A-Z]+): "
    r"(?P<message>.*)$"
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``logs.setup`` replaces the root handlers: put back what pytest had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    aiosqlite_level = logging.getLogger("aiosqlite").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiosqlite").setLevel(aiosqlite_level)


def emitted(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert err.endswith("\n")
    return err[:-1].split("\n")


# --- the formatter ----------------------------------------------------------------------------


def test_terminal_lines_carry_utc_time_program_pid_and_level(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    before = time.time()
    log = logs.setup("tlsrpt-test", "info")
    log.warning("disk %s is full", "/var")
    (line,) = emitted(capsys)
    match = TERMINAL_LINE.match(line)
    assert match, line
    assert match["name"] == "tlsrpt-test"
    assert int(match["pid"]) == os.getpid()
    assert match["level"] == "WARNING"
    assert match["message"] == "disk /var is full"
    stamp = calendar.timegm(time.strptime(line[:20], "%Y-%m-%dT%H:%M:%SZ"))
    assert before - 2 <= stamp <= time.time() + 1  # UTC, not local time


def test_under_journald_each_line_starts_with_its_syslog_priority(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    log = logs.setup("tlsrpt-test", "debug")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    log.log(25, "between info and warning")  # a custom level defaults to info
    assert emitted(capsys) == [
        "<7>d",
        "<6>i",
        "<4>w",
        "<3>e",
        "<2>c",
        "<6>between info and warning",
    ]


@pytest.mark.parametrize("journal", [False, True])
def test_a_newline_in_logged_data_cannot_forge_a_second_line(
    journal: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    if journal:
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    log = logs.setup("tlsrpt-test")
    log.error("bad domain %s", "evil.test\n<2>forged CRITICAL line\rmore")
    (line,) = emitted(capsys)
    assert line.endswith("bad domain evil.test\\n<2>forged CRITICAL line\\rmore")


def test_an_exception_traceback_stays_on_the_events_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    log = logs.setup("tlsrpt-test")
    try:
        raise ValueError("the detail")
    except ValueError:
        log.exception("flush failed")
    (line,) = emitted(capsys)
    assert line.startswith("<3>flush failed | Traceback (most recent call last): | ")
    assert line.endswith("ValueError: the detail")


def test_setup_filters_below_the_level_and_keeps_aiosqlite_quiet_at_debug(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    log = logs.setup("tlsrpt-test", "warning")
    log.info("not shown")
    log.warning("shown")
    assert emitted(capsys) == ["<4>shown"]
    logs.setup("tlsrpt-test", "debug")
    logging.getLogger("aiosqlite").debug("executing SELECT 1")
    log.debug("ours")
    assert emitted(capsys) == ["<7>ours"]
    # setup replaces the handlers: a second call does not print every line twice.
    assert len(logging.getLogger().handlers) == 1


# --- RepeatLimiter ----------------------------------------------------------------------------


def test_the_first_event_of_a_kind_passes_with_nothing_suppressed() -> None:
    assert RepeatLimiter(60).allow("too-large", now=1000.0) == 0


def test_repeats_inside_the_window_are_suppressed_and_counted_in_the_next_summary() -> None:
    limiter = RepeatLimiter(60)
    assert limiter.allow("too-large", 1000.0) == 0
    assert limiter.allow("too-large", 1001.0) is None
    assert limiter.allow("too-large", 1059.9) is None
    # A full interval after the last allowed event: one summary with the suppressed count.
    assert limiter.allow("too-large", 1060.0) == 2
    # The count starts again, and so does the window.
    assert limiter.allow("too-large", 1061.0) is None
    assert limiter.allow("too-large", 1120.0) == 1


def test_each_kind_has_its_own_window_and_count() -> None:
    limiter = RepeatLimiter(10)
    assert limiter.allow("a", 0.0) == 0
    assert limiter.allow("b", 1.0) == 0  # "a" being limited does not hold "b" back
    assert limiter.allow("a", 2.0) is None
    assert limiter.allow("b", 3.0) is None
    assert limiter.allow("b", 4.0) is None
    assert limiter.allow("a", 10.0) == 1
    assert limiter.allow("b", 10.0) is None  # b's window started at 1.0
    assert limiter.allow("b", 11.0) == 3


def test_events_reported_together_count_all_but_the_one_logged() -> None:
    limiter = RepeatLimiter(60)
    # Five identical events at once: one is logged, saying four more came with it.
    assert limiter.allow("bad", 0.0, events=5) == 4
    assert limiter.allow("bad", 1.0, events=3) is None
    assert limiter.allow("bad", 60.0) == 3
    assert limiter.allow("bad", 120.0, events=2) == 1


# --- Progress ---------------------------------------------------------------------------------


def test_progress_is_silent_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress("sending", 200)
    assert progress.enabled is False
    for done in range(1, 201):
        progress.step(done)
    assert capsys.readouterr().err == ""


PROGRESS_SCRIPT = """
import sys, time
from tlsrpt_reporter.logs import Progress
label, total = sys.argv[1], int(sys.argv[2])
with Progress(label, total) as progress:
    for done in range(1, total + 1):
        progress.step(done)
        time.sleep(0.005)  # work that takes a moment, so that a rate can be measured
sys.stderr.write("END\\n")
"""


def on_a_pty(label: str, total: int) -> str:
    """What a child process writes to stderr when stderr is a real pty."""
    status, out = pty_run.on_a_pty([sys.executable, "-c", PROGRESS_SCRIPT, label, str(total)])
    assert status == 0, out
    # The pty's line discipline turns "\n" into "\r\n".
    return out.replace("\r\n", "\n")


def test_progress_on_a_terminal_draws_a_bar_with_done_total_rate_and_time_left() -> None:
    out = on_a_pty("building 2026-03-01", 120)
    assert "building 2026-03-01" in out
    assert "120/120" in out
    assert re.search(r"\d[\d,.]*/s", out), out  # the rate, items per second
    assert re.search(r"ETA \S*\d:\d\d:\d\d", out), out  # the time left
    # The bar gives the cursor back before the program goes on.
    assert out.endswith("\x1b[?25hEND\n"), out


def test_progress_on_a_terminal_stays_quiet_for_twenty_items_or_fewer() -> None:
    assert on_a_pty("sending", 20) == "END\n"


def test_progress_off_a_terminal_says_a_plain_line_every_interval_with_rate_and_time_left(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # stderr is captured: not a terminal
    logs.setup("tlsrpt-reporter")
    now = [0.0]
    progress = Progress("building 2026-03-01", 5000, every=15.0, clock=lambda: now[0])
    assert progress.enabled is False
    for done in range(1, 5001):
        now[0] = done / 100  # 100 a second
        progress.step(done)
    assert emitted(capsys) == [
        "<6>building 2026-03-01: 1,500 of 5,000 (30 %), 100/s, about 35 s left",
        "<6>building 2026-03-01: 3,000 of 5,000 (60 %), 100/s, about 20 s left",
        "<6>building 2026-03-01: 4,500 of 5,000 (90 %), 100/s, about 5 s left",
        "<6>building 2026-03-01: 5,000 done in 50 s, 100/s",
    ]


def test_progress_off_a_terminal_without_logging_set_up_writes_the_bare_line(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    logging.getLogger().handlers[:] = []  # as in `build`, which sets up no logging
    now = [0.0]
    with Progress("replaying", 3_000_000, unit="bytes", every=10.0, clock=lambda: now[0]) as p:
        now[0] = 10.0
        p.step(1_500_000)
    assert emitted(capsys) == [
        "replaying: 1.5 MB of 3.0 MB (50 %), 150.0 kB/s, about 10 s left",
        "replaying: 1.5 MB done in 10 s, 150.0 kB/s",
    ]


# --- collapsing alike warnings ----------------------------------------------------------------


def test_alike_warnings_in_a_pass_become_the_first_one_and_a_line_with_the_count(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    log = logs.setup("tlsrpt-reporter")
    refused = "relay 127.0.0.1:25: connect failed: Connection refused"
    with logs.collapsed():
        for n in range(190):
            report, to = f"r{n}.id@example.net", f"mailto:tls@d{n}.example"
            attempt = 1 + n % 3  # the count of attempts differs, the fault does not
            log.warning("report %s to %s: attempt %d failed (%s): %s",
                        report, to, attempt, "failed-retrying", refused)  # fmt: skip
            if n == 0:
                log.info("progress %d", n)  # info lines are never held back
        # The error names the domain it is about: still alike once the name is taken out.
        for domain in ("a.example", "b.example", "c.example"):
            log.warning("DNS lookup for %s failed: %s", domain, f"_smtp._tls.{domain} TXT: timeout")
        log.error("a different fault: %s", "disk full")
    lines = emitted(capsys)
    assert lines == [
        f"<4>report r0.id@example.net to mailto:tls@d0.example: attempt 1 failed "
        f"(failed-retrying): {refused}",
        "<6>progress 0",
        "<4>DNS lookup for a.example failed: _smtp._tls.a.example TXT: timeout",
        "<3>a different fault: disk full",
        f"<4>report r0.id@example.net to mailto:tls@d0.example: attempt 1 failed "
        f"(failed-retrying): {refused} (and 189 more like it)",
        "<4>DNS lookup for a.example failed: _smtp._tls.a.example TXT: timeout "
        "(and 2 more like it)",
    ]


def test_warnings_with_different_errors_are_all_shown_and_collapsing_ends_with_the_block(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    log = logs.setup("tlsrpt-reporter")
    with logs.collapsed():
        log.warning("report to %s failed: %s", "mailto:a@a.example", "550 no such user")
        log.warning("report to %s failed: %s", "mailto:b@b.example", "452 mailbox full")
        # A short argument (an attempt number) is no name: "1" must not be taken out of "127".
        log.warning("attempt %s failed: %s", "1", "relay 127.0.0.1:25 refused")
        log.warning("attempt %s failed: %s", "2", "relay 127.0.0.2:25 refused")
    log.warning("report to %s failed: %s", "mailto:c@c.example", "550 no such user")
    assert emitted(capsys) == [
        "<4>report to mailto:a@a.example failed: 550 no such user",
        "<4>report to mailto:b@b.example failed: 452 mailbox full",
        "<4>attempt 1 failed: relay 127.0.0.1:25 refused",
        "<4>attempt 2 failed: relay 127.0.0.2:25 refused",
        "<4>report to mailto:c@c.example failed: 550 no such user",
    ]
