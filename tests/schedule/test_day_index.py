"""The day index: every per-domain look-up of a day's build, gathered in one pass (issue 15)."""

from __future__ import annotations

import random

from support.lines import DAY, line, tlsa

from tlsrpt_reporter.report.sources import DayData
from tlsrpt_reporter.schedule.day_index import index_day, latest_records


def _scan(records: dict[tuple[str, str], float], domain: str) -> str:
    """The rule as a scan of every (domain, record) for one domain."""
    seen = [(last, record) for (d, record), last in records.items() if d == domain and record]
    return max(seen)[1] if seen else ""


def test_the_record_seen_last_is_chosen_for_every_domain_as_a_scan_would() -> None:
    rng = random.Random(15)
    domains = [f"d{i}.example" for i in range(60)]
    records: dict[tuple[str, str], float] = {}
    for _ in range(400):
        domain = rng.choice(domains)
        # Few distinct times: ties between records, decided by the greater record.
        record = rng.choice(("", f"v=TLSRPTv1; rua=mailto:{rng.randrange(5)}@{domain}"))
        records[(domain, record)] = float(rng.randrange(4))
    chosen = latest_records(records)
    for domain in domains:
        assert chosen.get(domain, "") == _scan(records, domain), domain
    assert "" not in chosen.values(), "no record is never chosen over a real one"


def test_the_index_holds_each_report_domains_lines_and_no_other_days() -> None:
    other_day = {**line("a.example"), "day": "2026-02-28"}
    data = DayData(
        lines=[
            line("a.example", policy=tlsa("mx.a.example")),
            line("b.example"),
            other_day,
            {**line("c.example", policy=tlsa("mx.a.example")), "day": "2026-02-28"},
        ],
        records={("a.example", "v=TLSRPTv1; rua=mailto:r@a.example"): 5.0},
    )
    index = index_day(DAY, data, mx_host_reports=True)
    assert index.domains == ["a.example", "b.example", "mx.a.example"]
    assert index.recipients == {"a.example", "b.example"}
    assert len(index.lines["a.example"]) == 1 and other_day not in index.lines["a.example"]
    (host_line,) = index.lines["mx.a.example"]
    assert host_line["domain"] == "mx.a.example" and host_line["record"] == ""
    assert index.records == {"a.example": "v=TLSRPTv1; rua=mailto:r@a.example"}
    assert index_day(DAY, data, mx_host_reports=False).domains == ["a.example", "b.example"]
