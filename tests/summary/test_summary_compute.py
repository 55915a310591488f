"""The summary's pure parts: folding export lines, which domains changed, which day is
detailed, when the next report goes out, and the axis arithmetic of the charts."""

from __future__ import annotations

from typing import Any

from tlsrpt_reporter.report.result_types import ADVICE
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store.summary_queries import Due
from tlsrpt_reporter.summary import compute
from tlsrpt_reporter.summary.charts import nice_ceiling
from tlsrpt_reporter.summary.model import DayTraffic, fold_day

NOW = timing.day_end("2026-05-10") + 3600.0  # 2026-05-11 01:00 UTC


def _line(domain: str, ok: int, failed: int, *types: tuple[str, int]) -> dict[str, Any]:
    return {
        "domain": domain,
        "summary": {"total-successful-session-count": ok, "total-failure-session-count": failed},
        "failure-details": [{"result-type": t, "failed-session-count": n} for t, n in types],
    }


def _day(day: str, **domains: tuple[int, int]) -> DayTraffic:
    lines = [_line(d.replace("_", "."), ok, bad, ("certificate-expired", bad))
             for d, (ok, bad) in domains.items()]  # fmt: skip
    return fold_day(day, lines)


def _summary(traffic: list[DayTraffic], **kw: Any) -> Any:
    window = compute.Window.ending("2026-05-11", 30, kw.pop("day", None))
    facts = kw.pop("facts", compute.StateFacts())
    return compute.summarize(traffic, facts, window, now=NOW, grace=1800.0, spread=14400.0,
                             top=kw.pop("top", 50), **kw)  # fmt: skip


def test_a_days_lines_add_up_per_domain_and_result_type() -> None:
    t = fold_day("2026-05-10", [
        _line("a.example", 5, 2, ("certificate-expired", 2)),
        _line("a.example", 1, 1, ("tlsa-invalid", 1)),  # a second policy of the same domain
        _line("b.example", 3, 0),
    ])  # fmt: skip
    assert (t.sessions, t.failures) == (12, 3)
    assert t.domains == {"a.example": [9, 3], "b.example": [3, 0]}
    assert t.result_types == {"certificate-expired": 2, "tlsa-invalid": 1}
    assert t.domain_result_types["a.example"] == {"certificate-expired": 2, "tlsa-invalid": 1}


def test_changes_compare_each_domain_with_its_previous_day_with_sessions() -> None:
    traffic = [
        _day("2026-05-07", flaky_example=(5, 1), fixed_example=(5, 2)),
        _day("2026-05-08", steady_example=(5, 1)),  # flaky and fixed had no sessions here
        _day("2026-05-10", flaky_example=(5, 0), fixed_example=(5, 0), steady_example=(5, 1),
             broke_example=(5, 3), fresh_example=(0, 1)),
        _day("2026-05-09", broke_example=(5, 0), steady_example=(5, 1)),
    ]  # fmt: skip
    s = _summary(traffic)
    assert s.day == "2026-05-10"
    assert [c.domain for c in s.newly_failing] == ["broke.example", "fresh.example"]
    assert s.newly_failing[0].previous_day == "2026-05-09"
    assert s.newly_failing[1].previous_day is None
    assert [c.domain for c in s.recovered] == ["fixed.example", "flaky.example"]
    assert s.recovered[0].previous_day == "2026-05-07"


def test_the_running_day_is_detailed_only_when_no_finished_day_has_sessions() -> None:
    finished, running = _day("2026-05-10", a_example=(1, 0)), _day("2026-05-11", a_example=(1, 1))
    assert _summary([finished, running]).day == "2026-05-10"
    assert _summary([running]).day == "2026-05-11"
    assert _summary([finished, running], day="2026-05-11").day == "2026-05-11"
    assert _summary([]).day is None and _summary([]).empty


def test_lists_keep_the_top_entries_and_count_all() -> None:
    traffic = [_day("2026-05-10", **{f"d{i}_example": (10, i) for i in range(8)})]
    s = _summary(traffic, top=3)
    assert [d.domain for d in s.domains] == ["d7.example", "d6.example", "d5.example"]
    assert (s.domain_count, s.failing_domain_count) == (8, 7)


def test_result_type_rows_take_the_advice_of_inspect() -> None:
    line = _line("a.example", 0, 2, ("dnssec-invalid", 1), ("made-up-type", 1))
    rows = {r.result_type: r for r in _summary([fold_day("2026-05-10", [line])]).result_types}
    assert rows["dnssec-invalid"].cause is ADVICE["dnssec-invalid"].cause
    assert rows["made-up-type"].cause == ""


def test_the_next_report_is_the_earliest_stored_due_time() -> None:
    due = Due(report_at=NOW + 600, reports=2, delivery_at=NOW + 60, deliveries=1)
    s = _summary([], facts=compute.StateFacts(due=due))
    assert s.next_send.at == NOW + 60 and "1 deliveries" in s.next_send.what


def test_without_stored_work_the_next_report_follows_the_next_build() -> None:
    # Today's reports: built at the day's end plus grace, sent over the spread (RFC 8460 §4.1).
    s = _summary([], facts=compute.StateFacts(due=Due(None, 0, None, 0)))
    ready = timing.ready_at("2026-05-11", 1800.0)
    assert (s.next_send.at, s.next_send.until) == (ready, ready + 14400.0)


def test_a_finished_day_not_built_yet_is_due_at_once() -> None:
    traffic = [_day("2026-05-09", a_example=(1, 0)), _day("2026-05-10", a_example=(1, 0))]
    facts = compute.StateFacts(built={"2026-05-09": 1})
    s = _summary(traffic, facts=facts)
    assert s.next_send.at == timing.ready_at("2026-05-10", 1800.0) < NOW
    assert "2026-05-10" in s.next_send.what


def test_the_window_holds_real_days_only() -> None:
    assert len(compute.Window.ending("2026-03-01", 30).days()) == 30
    assert compute.Window.ending("2026-03-01", 30).first == "2026-01-31"
    assert compute.is_day("2026-02-28") and not compute.is_day("2026-02-30")
    assert not compute.is_day("2026-02-28<script>") and not compute.is_day("2026-2-28")


def test_chart_axes_end_on_round_numbers() -> None:
    assert [nice_ceiling(v) for v in (0, 0.7, 3, 40, 41, 99, 101)] == [
        1.0, 1.0, 5.0, 50.0, 50.0, 100.0, 200.0,
    ]  # fmt: skip
