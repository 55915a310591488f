"""Both forms of protocol version 1 through the real collector: with "dpv" and without it.

The datagrams in tests/data/libtlsrpt-0.5.0rc1.jsonl are bytes exactly as a real Postfix 3.10.13
with Debian 13's libtlsrpt0 0.5.0rc1-2 sent them to a collector socket (no "dpv" key, the whole
EHLO reply in "h", TLSA data in upper-case hex).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.collector import Collector, send_all
from support.paths import DATA

MakeCollector = Callable[..., Collector]
SAMPLES = DATA / "libtlsrpt-0.5.0rc1.jsonl"


def _policy(policy_type: str, domain: str, strings: list[str]) -> dict[str, Any]:
    # `export` carries only the keys that have values (no empty policy-string).
    policy: dict[str, Any] = {"policy-type": policy_type, "policy-domain": domain}
    if strings:
        policy["policy-string"] = strings
    return policy


def _line(domain: str, policy: dict[str, Any], ok: int, failed: int, details: list[Any]) -> Any:
    return {
        "day": None,
        "domain": domain,
        "record": f"v=TLSRPTv1; rua=mailto:tlsrpt@{domain}",
        "policy": policy,
        "summary": {
            "total-successful-session-count": ok,
            "total-failure-session-count": failed,
        },
        "failure-details": details,
    }


def _detail(result_type: str, domain: str, ip: str, **extra: str) -> Any:
    detail = {
        "result-type": result_type,
        "sending-mta-ip": "127.0.0.1",
        "receiving-mx-hostname": f"mx.{domain}",
        # The datagram carries the whole EHLO reply; what is stored is the announced name.
        "receiving-mx-helo": f"mx.{domain}",
        "receiving-ip": ip,
        "failed-session-count": 1,
    }
    detail.update(extra)
    return detail


def expected_export(day: str) -> list[Any]:
    """What the six captured datagrams must be stored as, one export line each."""
    tlsa = "3 1 1 "
    lines = [
        _line(
            "a-dane-ok.test",
            _policy(
                "tlsa",
                "mx.a-dane-ok.test",
                [tlsa + "E3F7E3D15E2F3BB1799D5866D0D5E415A3E1416A2B2D5C681CC3096CF51668B6"],
            ),
            1,
            0,
            [],
        ),
        _line(
            "b-dane-mismatch.test",
            _policy(
                "tlsa",
                "mx.b-dane-mismatch.test",
                [tlsa + "DAB6A3F8A023EBC356365C9A6431ABEF94363C25FE34FCF8D431D86742A28008"],
            ),
            0,
            1,
            [_detail("certificate-not-trusted", "b-dane-mismatch.test", "127.0.0.12")],
        ),
        _line(
            "d-dane-nostarttls.test",
            _policy(
                "tlsa",
                "mx.d-dane-nostarttls.test",
                [tlsa + "7FC35B8F78395B611EBBEAA537D0F06365779E310680F5CE2F187CC5DA3AE2E4"],
            ),
            0,
            1,
            [_detail("starttls-not-supported", "d-dane-nostarttls.test", "127.0.0.14")],
        ),
        _line(
            "c-dane-unusable.test",
            _policy(
                "tlsa",
                "mx.c-dane-unusable.test",
                [
                    tlsa + "0DBECC60DD2B678C7526F94FE10555BF",
                    "3 2 1 0DBECC60DD2B678C7526F94FE10555BFB125AB6B5C3E22FFB802A4F9CB3D8B49",
                ],
            ),
            0,
            1,
            [
                _detail(
                    "tlsa-invalid",
                    "c-dane-unusable.test",
                    "127.0.0.13",
                    **{"failure-reason-code": "all-TLSA-records-unusable"},
                )
            ],
        ),
        _line(
            "c2-dane-dropped.test",
            _policy("no-policy-found", "c2-dane-dropped.test", []),
            1,
            0,
            [],
        ),
        _line("e-notlsa.test", _policy("no-policy-found", "e-notlsa.test", []), 1, 0, []),
    ]
    for line in lines:
        line["day"] = day
    return lines


def _by_domain(lines: list[Any]) -> dict[str, Any]:
    return {line["domain"]: line for line in lines}


def test_captured_postfix_3_10_datagrams_are_stored_exactly(
    make_collector: MakeCollector,
) -> None:
    c = make_collector().start()
    grams = SAMPLES.read_bytes().splitlines()
    assert len(grams) == 6
    send_all(c.socket, grams)
    assert c.stop() == 0
    exported = c.export()
    day = exported[0]["day"]
    assert _by_domain(exported) == _by_domain(expected_export(day))
    counters = c.counters(day)
    assert counters["received"] == counters["accepted"] == 6
    assert counters.get("rejected", 0) == 0
    assert counters["wire-form:no-dpv"] == 6
    assert "wire-form:dpv-1" not in counters


def test_counters_tell_the_two_wire_forms_apart(
    make_collector: MakeCollector, shared_dir: Path
) -> None:
    metrics = shared_dir / "collectd.prom"
    c = make_collector(metrics_file=metrics).start()
    old = SAMPLES.read_bytes().splitlines()
    new = [b'{"dpv": "1",' + gram[1:] for gram in old]
    unknown = b'{"dpv": "2",' + old[0][1:]
    send_all(c.socket, [*old, *new, *new, unknown])
    assert c.stop() == 0
    counters = c.counters()
    assert counters["wire-form:no-dpv"] == 6
    assert counters["wire-form:dpv-1"] == 12
    assert counters["rejected:unknown-dpv"] == 1
    assert counters["accepted"] == 18
    # The metrics file, written at shutdown, says the same since the daemon started.
    exposition = metrics.read_text()
    assert 'tlsrpt_collectd_accepted_by_form_total{form="dpv-1"} 12' in exposition
    assert 'tlsrpt_collectd_accepted_by_form_total{form="no-dpv"} 6' in exposition
    # The two forms of one session are the same session: the counts add up.
    summary = {line["domain"]: line["summary"] for line in c.export()}
    assert summary["a-dane-ok.test"]["total-successful-session-count"] == 3
    assert summary["b-dane-mismatch.test"]["total-failure-session-count"] == 3
