"""The seam between the stages, as a property: any datagram the collector accepts yields reports
that pass the full RFC 8460 schema, and every accepted session is counted in them.

Hostile values everywhere a string goes (empty strings, control characters, zones on IPv6
addresses, odd case, trailing dots, free text where a URI belongs), through the real decoder,
the real aggregate and SQLite store, the reporter's sources and the report builder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.errors import DatagramRejected
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode
from tlsrpt_reporter.wire.encode import encode_object

DAY = "2026-03-01"
WHEN = 1_772_330_000.0
CFG = ReporterConfig(
    organization_name="Example Mail Ltd",
    contact_info="tlsrpt@example.net",
    mx_host_reports=False,
)

_odd_text = st.one_of(
    st.just(""),
    st.text(max_size=40),
    st.sampled_from(
        [
            "fe80::1%eth0",
            "::ffff:192.0.2.1",
            "2001:DB8::1",
            "192.0.2.1",
            " ",
            "\r\n",
            "a\x00b",
            "MX.Example.COM.",
            "*.mail.example",
            "https://x.example/y",
            "250-mx.example\r\n250 X",
            "3 1 1 ab",
            "x" * 1500,
        ]
    ),
)
_domain = st.sampled_from(["example.com", "Example.COM.", "xn--bcher-kva.example", "a.b.example"])
_code = st.one_of(st.sampled_from([201, 202, 203, 204, 205, 301, 302, 303, 304, 305, 306, 901]),
                  st.integers(0, 999))  # fmt: skip


@st.composite
def _detail(draw: st.DrawFn) -> dict[str, Any]:
    detail: dict[str, Any] = {"c": draw(_code)}
    for key in ("s", "n", "h", "r", "a", "f"):
        if draw(st.booleans()):
            detail[key] = draw(_odd_text)
    return detail


@st.composite
def _policy(draw: st.DrawFn) -> dict[str, Any]:
    details = draw(st.lists(_detail(), max_size=3))
    policy: dict[str, Any] = {"policy-type": draw(st.sampled_from([1, 2, 9]))}
    if draw(st.booleans()):
        policy["policy-domain"] = draw(st.one_of(_domain, st.just("")))
    for key in ("policy-string", "mx-host"):
        if draw(st.booleans()):
            policy[key] = draw(st.lists(_odd_text, max_size=4))
    if details:
        policy["failure-details"] = details
    policy["t"] = len(details)
    policy["f"] = draw(st.sampled_from([0, 1]))
    return policy


@st.composite
def _datagram(draw: st.DrawFn) -> bytes:
    obj: dict[str, Any] = {"dpv": "1"} if draw(st.booleans()) else {}
    obj["d"] = draw(_domain)
    obj["pr"] = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"
    obj["policies"] = draw(st.lists(_policy(), min_size=1, max_size=3))
    return encode_object(obj)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_datagram(), min_size=1, max_size=6))
def test_every_accepted_datagram_is_reported_in_valid_reports(grams: list[bytes]) -> None:
    agg = Aggregate()
    sessions = 0
    for raw in grams:
        try:
            decoded = decode(raw)
        except DatagramRejected:
            continue
        agg.add(DAY, WHEN, decoded)
        sessions += len(decoded.results)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "collectd.sqlite"
        conn = store.connect(db)
        store.write(conn, store.build_batch(agg))
        conn.close()
        data = sources.read_day([str(db)], DAY)
    assert not data.failed_sources
    rows, result = schedule.build_reports(CFG, DAY, data, WHEN + 86400, instance="t1")
    # Nothing set aside: build_reports validated every report against the full schema.
    assert result.set_aside == []
    counted = sum(
        policy["summary"]["total-successful-session-count"]
        + policy["summary"]["total-failure-session-count"]
        for row in rows
        for policy in row["built"].document["policies"]
    )
    assert counted == sessions
