"""Tests of the libtlsrpt-like datagram client: its JSON layout and its non-blocking sends."""

from __future__ import annotations

import json
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsrpt_reporter.wire.encode import DatagramSender, SendError, datagram, encode_object

# The example datagrams (with dpv) of the protocol: an MTA-STS success, a DANE failure, no policy.
PROTOCOL_EXAMPLES = [
    {
        "dpv": "1",
        "d": "example.com",
        "pr": "v=TLSRPTv1; rua=mailto:tlsrpt@example.com",
        "policies": [
            {
                "policy-type": 2,
                "policy-domain": "example.com",
                "policy-string": [
                    "version: STSv1",
                    "mode: enforce",
                    "mx: mail.example.com",
                    "max_age: 86400",
                ],
                "mx-host": ["mail.example.com"],
                "t": 0,
                "f": 0,
            }
        ],
    },
    {
        "dpv": "1",
        "d": "mx.example.net",
        "pr": "v=TLSRPTv1;rua=https://reports.example.net/tlsrpt",
        "policies": [
            {
                "policy-type": 1,
                "policy-domain": "mx.example.net",
                "policy-string": [
                    "3 1 1 8A9A70596E869BED72C69D97A8895DFA",
                    "3 1 1 12350A337E6DB9C6123522D136A47563",
                ],
                "failure-details": [
                    {
                        "c": 304,
                        "s": "192.0.2.10",
                        "n": "mx.example.net",
                        "h": "mx.example.net ESMTP",
                        "r": "198.51.100.7",
                        "f": "tlsa-no-match",
                    }
                ],
                "t": 1,
                "f": 1,
            }
        ],
    },
    {
        "dpv": "1",
        "d": "example.org",
        "pr": "v=TLSRPTv1; rua=mailto:tls@example.org",
        "policies": [{"policy-type": 9, "policy-domain": "example.org", "t": 0, "f": 0}],
    },
]


# --- encoding -------------------------------------------------------------------------------


def test_strings_are_written_with_a_space_after_the_colon_and_numbers_without() -> None:
    encoded = encode_object({"dpv": "1", "d": "example.com", "t": 0, "f": 1})
    assert encoded == b'{"dpv": "1","d": "example.com","t":0,"f":1}'


def test_arrays_of_strings_and_of_objects_use_the_libtlsrpt_layout() -> None:
    encoded = encode_object(
        {
            "policy-string": ["a", "b"],
            "failure-details": [{"c": 304, "s": "192.0.2.10"}, {"c": 201}],
        }
    )
    assert encoded == (
        b'{"policy-string":["a","b"],"failure-details":[{"c":304,"s": "192.0.2.10"},{"c":201}]}'
    )


def test_none_values_are_left_out() -> None:
    assert encode_object({"dpv": "1", "pr": None, "t": 0}) == b'{"dpv": "1","t":0}'


def test_quote_and_backslash_are_escaped() -> None:
    encoded = encode_object({"a": 'say "hi" \\o/'})
    assert encoded == b'{"a": "say \\"hi\\" \\\\o/"}'
    assert json.loads(encoded) == {"a": 'say "hi" \\o/'}


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x1f"])
def test_control_characters_are_written_as_u00xx_escapes(char: str) -> None:
    encoded = encode_object({"a": f"x{char}y"})
    assert encoded == b'{"a": "x\\u%04xy"}' % ord(char)
    assert json.loads(encoded) == {"a": f"x{char}y"}


def test_no_control_byte_is_ever_written_raw() -> None:
    text = "".join(chr(c) for c in range(0x20))
    encoded = encode_object({"h": text, "list": [text]})
    assert not any(b < 0x20 for b in encoded)
    assert json.loads(encoded) == {"h": text, "list": [text]}


def test_bytes_of_0x80_and_above_pass_through_unchanged() -> None:
    raw = bytes(range(0x80, 0x100))
    encoded = encode_object({"h": b"ehlo " + raw})
    assert encoded == b'{"h": "ehlo ' + raw + b'"}'
    assert encode_object({"n": "bücher"}) == b'{"n": "b\xc3\xbccher"}'


def test_datagram_writes_dpv_d_pr_then_policies() -> None:
    encoded = datagram("example.com", [{"policy-type": 9, "t": 0, "f": 0}], "v=TLSRPTv1;")
    assert encoded == (
        b'{"dpv": "1","d": "example.com","pr": "v=TLSRPTv1;",'
        b'"policies":[{"policy-type":9,"t":0,"f":0}]}'
    )
    assert b'"pr"' not in datagram("example.com", [{"policy-type": 9, "t": 0, "f": 0}])


@pytest.mark.parametrize("example", PROTOCOL_EXAMPLES, ids=["sts", "dane", "no-policy"])
def test_protocol_examples_encode_to_json_of_the_same_object(example: dict[str, Any]) -> None:
    encoded = encode_object(example)
    assert json.loads(encoded) == example
    assert encoded.startswith(b'{"dpv": "1","d": "')


def test_datagram_helper_matches_encode_object_on_the_examples() -> None:
    for example in PROTOCOL_EXAMPLES:
        assert datagram(example["d"], example["policies"], example["pr"]) == encode_object(example)


@settings(max_examples=250, deadline=None)
@given(st.text(max_size=60), st.lists(st.text(max_size=20), max_size=4))
def test_any_text_encodes_to_json_that_decodes_to_the_same_text(
    text: str, items: list[str]
) -> None:
    obj = {"h": text, "policy-string": items, "t": len(items)}
    encoded = encode_object(obj)
    assert json.loads(encoded) == obj
    assert not any(b < 0x20 for b in encoded)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_pass_through_except_escaped_ascii(raw: bytes) -> None:
    encoded = encode_object({"h": raw})
    body = encoded[len(b'{"h": "') : -len(b'"}')]
    high = bytes(b for b in raw if b >= 0x80)
    assert bytes(b for b in body if b >= 0x80) == high
    # Replacing every high byte with a letter leaves JSON that decodes to the same ASCII text.
    assert json.loads(encoded.translate(_HIGH_TO_X))["h"] == raw.translate(_HIGH_TO_X).decode()


_HIGH_TO_X = bytes(range(0x80)) + b"X" * 0x80


# --- sending --------------------------------------------------------------------------------


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory whose socket paths fit in sun_path (108 bytes)."""
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="tlsrpt-test-") as short:
        yield Path(short)


def max_dgram_qlen() -> int:
    try:
        return int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    except (OSError, ValueError):
        return 512


def bound_receiver(path: Path) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    return receiver


def drain(receiver: socket.socket) -> list[bytes]:
    receiver.setblocking(False)
    received = []
    while True:
        try:
            received.append(receiver.recv(1 << 18))
        except BlockingIOError:
            return received


def test_sent_datagrams_arrive_one_by_one(sock_dir: Path) -> None:
    path = sock_dir / "collector.sock"
    receiver = bound_receiver(path)
    payloads = [encode_object(example) for example in PROTOCOL_EXAMPLES]
    try:
        with DatagramSender(str(path)) as sender:
            assert [sender.send(p) for p in payloads] == [True, True, True]
        assert (sender.sent, sender.dropped) == (3, 0)
        assert drain(receiver) == payloads
    finally:
        receiver.close()


def test_full_receive_queue_drops_at_the_sender_and_counts(sock_dir: Path) -> None:
    path = sock_dir / "collector.sock"
    receiver = bound_receiver(path)  # bound, never read while sending
    qlen = max_dgram_qlen()
    attempts = qlen + 50
    payloads = [
        datagram(f"host{i}.example", [{"policy-type": 9, "t": 0, "f": 0}]) for i in range(attempts)
    ]
    try:
        with DatagramSender(str(path)) as sender:
            results = [sender.send(p) for p in payloads]
        assert sender.dropped > 0
        assert sender.sent >= 1
        assert sender.sent + sender.dropped == attempts
        assert results.count(True) == sender.sent
        assert results.count(False) == sender.dropped
        # Nobody reads, so once the queue is full every later datagram is dropped.
        assert results == [True] * sender.sent + [False] * sender.dropped
        # docs/protocol.md: the queue holds at most max_dgram_qlen (+1) datagrams.
        assert sender.sent <= qlen + 1
        # Exactly the datagrams counted as sent are waiting, in order.
        assert drain(receiver) == payloads[: sender.sent]
    finally:
        receiver.close()


def test_sending_to_a_missing_socket_raises_send_error_naming_the_path(sock_dir: Path) -> None:
    path = sock_dir / "no-such.sock"
    with DatagramSender(str(path)) as sender:
        with pytest.raises(SendError, match=re.escape(str(path))):
            sender.send(b"{}")
        assert (sender.sent, sender.dropped) == (0, 0)


def test_sending_to_a_socket_nobody_listens_on_raises_send_error(sock_dir: Path) -> None:
    path = sock_dir / "stale.sock"
    bound_receiver(path).close()  # the file stays, the listener is gone
    assert path.exists()
    with DatagramSender(str(path)) as sender:
        with pytest.raises(SendError, match=re.escape(str(path))):
            sender.send(b"{}")
        assert (sender.sent, sender.dropped) == (0, 0)
