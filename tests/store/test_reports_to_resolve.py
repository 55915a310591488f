"""The pending reports a delivery pass resolves are listed without their bytes (a day of
100,000 held ~300 MiB in the send process), which the attempt reads again; on both state
databases."""

from __future__ import annotations

from tlsrpt_reporter.store import reports as state

DAY = "2026-03-01"
NOW = 1_772_500_000.0


def test_reports_to_resolve_leave_the_bytes_to_the_attempt(state_location: str) -> None:
    conn = state.connect(state_location)
    stored = b"\x1f\x8b" + bytes(range(256)) * 8
    state.insert_report(
        conn,
        DAY,
        {"domain": "a.example", "report_id": "2026.03.01.x@r.example", "message_id": "m@r",
         "date": "Sun, 01 Mar 2026 00:00:00 +0000", "filename": "f.json.gz", "gzip": stored,
         "summary": "{}", "record": "v=TLSRPTv1; rua=mailto:r@a.example", "send_at": NOW},
    )  # fmt: skip
    (row,) = state.reports_to_resolve(conn, NOW, force=False)
    assert (row.domain, row.record, row.send_at, row.status) == (
        "a.example", "v=TLSRPTv1; rua=mailto:r@a.example", NOW, "pending",
    )  # fmt: skip
    assert bytes(row.gzip) == b""
    assert bytes(state.report(conn, row.id).gzip) == stored
    assert state.reports_to_resolve(conn, NOW - 1, force=False) == []
