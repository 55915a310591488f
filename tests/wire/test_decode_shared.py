"""What the decoder keeps between datagrams (tlsrpt_reporter.wire.shared, the CachingDecoder's
cache) changes how often work is done, never what a datagram decodes to."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tlsrpt_reporter.demo import samplegen
from tlsrpt_reporter.errors import DatagramRejected
from tlsrpt_reporter.wire import canon
from tlsrpt_reporter.wire import decode as wire
from tlsrpt_reporter.wire.encode import datagram

RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"


def failing(domain: str, detail: dict[str, Any], strings: list[Any] | None = None) -> bytes:
    policy = {
        "policy-type": 2,
        "policy-domain": domain,
        "policy-string": strings or ["version: STSv1", "mode: enforce"],
        "mx-host": ["mx.example.net"],
        "failure-details": [detail],
        "t": 1,
        "f": 1,
    }
    return datagram(domain, [policy], RECORD)


def test_repairs_are_noted_again_each_time_a_remembered_value_recurs() -> None:
    odd = {"c": 202, "s": "::ffff:192.0.2.9", "r": "not-an-address", "h": "mx\x07 ESMTP"}
    strings = ["version: STSv1", "mode:\x01enforce"]
    # Different domains: different bytes, so only the remembered values can be shared.
    first = wire.decode(failing("a.example", odd, strings))
    second = wire.decode(failing("b.example", odd, strings))
    for decoded in (first, second):
        detail = decoded.results[0].failure_details[0]
        assert detail.sending_mta_ip == "192.0.2.9"
        assert detail.receiving_ip is None
        assert decoded.results[0].policy.policy_string == ("version: STSv1", "mode: enforce")
        assert canon.NOTE_DROPPED_FIELD in decoded.notes
        assert canon.NOTE_CONTROL in decoded.notes
    assert first.results[0].policy.policy_domain == "a.example"
    assert second.results[0].policy.policy_domain == "b.example"


def test_a_remembered_value_does_not_let_a_value_of_another_type_through() -> None:
    wire.decode(failing("a.example", {"c": 202, "s": "192.0.2.1"}))
    with pytest.raises(DatagramRejected) as info:
        wire.decode(failing("a.example", {"c": 202, "s": 3221225985}))
    assert info.value.reason == "wrong-type"
    policy = json.loads(failing("a.example", {"c": 202}))["policies"]
    policy[0]["policy-string"] = [["version: STSv1"], "mode: enforce"]
    with pytest.raises(DatagramRejected) as info:
        wire.decode(json.dumps({"dpv": "1", "d": "a.example", "policies": policy}).encode())
    assert info.value.reason == "wrong-type"


def test_a_realistic_mix_decodes_the_same_with_and_without_the_cache() -> None:
    grams = list(samplegen.sessions(7, 300, 3000))
    decoder = wire.CachingDecoder(max_entries=64, max_bytes=64 * 1024)
    for data in grams:
        assert decoder.decode(data) == wire.decode(data)


def test_the_cache_stays_small_while_every_datagram_is_new() -> None:
    decoder = wire.CachingDecoder()
    floor = decoder.max_entries // 32
    for n in range(20_000):
        decoder.decode(datagram(f"d{n}.example", [{"policy-type": 9, "t": 0, "f": 0}], RECORD))
        assert len(decoder._cache) <= 2 * floor


def test_the_cache_grows_to_hold_datagrams_that_recur() -> None:
    grams = [
        datagram(f"d{n}.example", [{"policy-type": 9, "t": 0, "f": 0}], RECORD) for n in range(5000)
    ]
    decoder = wire.CachingDecoder()
    for _ in range(5):  # it doubles once a generation's worth of them missed
        for data in grams:
            decoder.decode(data)
    first = [decoder.decode(data) for data in grams]
    assert all(decoder.decode(data) is got for data, got in zip(grams, first, strict=True))


def test_large_datagrams_are_decoded_but_not_cached() -> None:
    details = [{"c": 202, "f": f"reason {n} " + "x" * 200} for n in range(80)]
    policy = {"policy-type": 2, "failure-details": details, "t": 80, "f": 1}
    data = datagram("big.example", [policy], RECORD)
    assert len(data) > 16 * 1024
    decoder = wire.CachingDecoder()
    first = decoder.decode(data)
    again = decoder.decode(data)
    assert again == first and again is not first
