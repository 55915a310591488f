"""Fuzz targets for the inputs outsiders control: the datagram decoder, the `_smtp._tls` record
parser, report files for `inspect` (JSON, gzip, MIME) and the configuration loader. None may
raise anything but its module's own error.

`make test` runs each briefly. For a longer run, set the number of examples per target:

    TLSRPT_FUZZ_EXAMPLES=200000 .venv/bin/pytest -q tests/fuzz
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tomllib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsrpt_reporter.config.load import parse
from tlsrpt_reporter.deliver.record import RecordError, parse_record
from tlsrpt_reporter.errors import ConfigError, DatagramRejected
from tlsrpt_reporter.report import inspect
from tlsrpt_reporter.report.reading import ReportFileError, read_report
from tlsrpt_reporter.wire.decode import decode

EXAMPLES = int(os.environ.get("TLSRPT_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@FUZZ
@given(st.binary(max_size=2000))
def test_the_decoder_only_decodes_or_rejects(data: bytes) -> None:
    with contextlib.suppress(DatagramRejected):
        decode(data)


_record_text = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(["v=TLSRPTv1", "rua=", "mailto:", "https://", "%0D%0A", ",", ";", " ",
                         "a@b.example", "x.example/p", "ext=v", "!", "%", "\x00", "é"]),
        max_size=30,
    ).map("".join),
)  # fmt: skip


@FUZZ
@given(_record_text)
def test_the_record_parser_only_parses_or_refuses(text: str) -> None:
    try:
        record = parse_record(text)
    except RecordError:
        return
    for uri in record.uris:
        assert uri.scheme in ("mailto", "https")
        assert all(ch >= " " and ch != "\x7f" for ch in uri.value)


def _mail(body: bytes, boundary: str, nested: int) -> bytes:
    head = b"From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
    parts = body
    for level in range(nested):
        mark = f"{boundary}{level}".encode()
        parts = (
            b"Content-Type: multipart/mixed; boundary=" + mark + b"\r\n\r\n--" + mark
            + b"\r\n" + parts + b"\r\n--" + mark + b"--\r\n"
        )  # fmt: skip
    return head + parts


@st.composite
def _report_file(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "gzip", "mail", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=500))
    text = str(draw(_json_value)).encode()
    if kind == "json":
        return b"{" + text
    if kind == "gzip":
        data = gzip.compress(text)
        cut = draw(st.integers(0, len(data)))
        return data[:cut] if draw(st.booleans()) else data
    body = b"Content-Type: application/tlsrpt+gzip\r\n\r\n" + draw(st.binary(max_size=200))
    return _mail(body, draw(st.text("abc", min_size=1, max_size=5)), draw(st.integers(0, 5)))


@FUZZ
@given(_report_file())
def test_reading_and_rendering_a_report_file_only_reads_or_refuses(data: bytes) -> None:
    try:
        found = read_report(data)
    except ReportFileError:
        return
    inspect.problems(found)


_toml_scalar = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(), st.text(max_size=30)
)
_table = st.dictionaries(
    st.sampled_from(["socket", "db", "grace", "spread", "retry_for", "timeout", "relay", "from",
                     "allow_private", "nameservers", "port", "sources", "contact_info", "x"]),
    _toml_scalar | st.lists(_toml_scalar, max_size=3),
    max_size=6,
)  # fmt: skip


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["collectd", "reporter", "dns", "other"]),
        _table,
        max_size=3,
    )
)
def test_the_config_loader_only_loads_or_refuses(data: dict[str, Any]) -> None:
    with contextlib.suppress(ConfigError):
        parse(data)


@FUZZ
@given(st.text(max_size=400))
def test_any_toml_text_is_either_parsed_then_checked_or_refused(text: str) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    with contextlib.suppress(ConfigError):
        parse(data)
