"""Metrics: the exposition format, the collector's metrics_file, ``status --format prometheus``.

Every output is read back with the strict parser below, which refuses anything the text
format 0.0.4 does not allow (samples before their TYPE, bad escapes, duplicate series,
non-cumulative histogram buckets, a missing final newline).
"""

from __future__ import annotations

import math
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily
from support.collector import Collector, send_all, write_config
from support.datagrams import ok
from support.site import Site

from tlsrpt_collectd import metrics as collector_metrics
from tlsrpt_reporter import exposition
from tlsrpt_reporter.deliver import error_kinds, https, smtp
from tlsrpt_reporter.model import RESULT_TYPES
from tlsrpt_reporter.wire.decode import REJECT_REASONS

MakeCollector = Callable[..., Collector]

# --- a strict parser of the text format ------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"({_NAME})(?:\{{(.*)\}})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


@dataclass
class Parsed:
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), text)


def _family_of(name: str, types: dict[str, str]) -> str:
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and types.get(base) in ("histogram", "summary"):
            return base
    raise AssertionError(f"sample {name} has no TYPE line before it")


def parse(text: str) -> Parsed:
    """The families and samples of ``text``; AssertionError on anything not allowed."""
    assert text.endswith("\n"), "the text must end with a newline"
    out = Parsed()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name) and name not in out.helps, line
            assert re.fullmatch(r"(?:[^\\]|\\[\\n])*", help_text), f"bad HELP escape: {line}"
            out.helps[name] = _unescape(help_text)
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in _TYPES and name not in out.types, line
            own = {name, name + "_bucket", name + "_sum", name + "_count"}
            assert not any(n in own for n, _ in out.samples), f"TYPE after samples: {line}"
            out.types[name] = kind
            continue
        assert not line.startswith("#") and line.strip() == line and line, repr(line)
        match = _SAMPLE.fullmatch(line)
        assert match, f"not a sample line: {line!r}"
        name, raw_labels, raw_value = match.groups()
        family = _family_of(name, out.types)
        labels: list[tuple[str, str]] = []
        rest = raw_labels or ""
        while rest:
            label = _LABEL.match(rest)
            assert label, f"bad labels in {line!r}"
            labels.append((label.group(1), _unescape(label.group(2))))
            rest = rest[label.end() :]
        assert len({n for n, _ in labels}) == len(labels), f"repeated label in {line!r}"
        key = (name, frozenset(labels))
        assert key not in out.samples, f"duplicate series {line!r}"
        assert family in out.helps, f"{family} has no HELP"
        value = float(raw_value) if raw_value not in ("+Inf", "-Inf", "NaN") else None
        out.samples[key] = value if value is not None else float(raw_value.lower())
    for name, kind in out.types.items():
        if kind == "histogram":
            _check_histogram(out, name)
    return out


def _check_histogram(out: Parsed, name: str) -> None:
    buckets = sorted((float(dict(k)["le"]), v) for k, v in out.series(name + "_bucket").items())
    assert buckets and buckets[-1][0] == math.inf, f"{name} has no +Inf bucket"
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"{name} buckets are not cumulative"
    assert out.value(name + "_count") == counts[-1]


# --- the format ------------------------------------------------------------------------------


def test_label_values_and_help_are_escaped_and_read_back_unchanged() -> None:
    nasty = 'a "quoted" back\\slash\nand a newline'
    family = GaugeMetricFamily("x_things", "help with \\ and\nnewline", labels=["why"])
    text = exposition.render([exposition.by_label(family, [(nasty, 3), ("", 0.25)])])
    assert '{why="a \\"quoted\\" back\\\\slash\\nand a newline"} 3.0\n' in text
    parsed = parse(text)
    assert parsed.value("x_things", why=nasty) == 3
    assert parsed.value("x_things", why="") == 0.25
    assert parsed.helps["x_things"] == "help with \\ and\nnewline"


def test_histogram_buckets_are_cumulative_end_with_inf_and_spell_bounds_as_go_does() -> None:
    family = exposition.histogram("x_seconds", "h", (0.1, 1.0, 30.0), [2, 3, 0, 1], 4.5)
    text = exposition.render([family])
    # "1", not Python's "1.0": a query's {le="1"} matches the label value as a string.
    assert 'x_seconds_bucket{le="1"} 5.0\n' in text and 'le="30"' in text
    parsed = parse(text)
    assert parsed.value("x_seconds_bucket", le="0.1") == 2
    assert parsed.value("x_seconds_bucket", le="1") == 5
    assert parsed.value("x_seconds_bucket", le="30") == 5
    assert parsed.value("x_seconds_bucket", le="+Inf") == 6
    assert parsed.value("x_seconds_count") == 6 and parsed.value("x_seconds_sum") == 4.5
    with pytest.raises(ValueError, match="one count per bound"):
        exposition.histogram("x_seconds", "h", (0.1,), [1], 0.0)


def test_a_rendering_holds_only_the_families_given_never_the_librarys_own() -> None:
    """The library's global registry adds the process's CPU, memory and GC metrics; a file
    for the textfile collector must not (node-exporter reports its own under those names)."""
    text = exposition.render([exposition.gauge("x_one", "h", 1)])
    assert parse(text).types == {"x_one": "gauge"}
    assert exposition.render([]) == ""


def test_the_collectors_flush_durations_fall_into_inclusive_buckets() -> None:
    counters = collector_metrics.Counters(started=1.0)
    for seconds in (0.001, 0.003, 0.2, 99.0):
        counters.flushed(seconds, 2.0, 10)
    parsed = parse(collector_metrics.text(counters, 0))
    name = "tlsrpt_collectd_flush_duration_seconds"
    assert parsed.value(name + "_bucket", le="0.001") == 1  # "le" includes the bound
    assert parsed.value(name + "_bucket", le="0.005") == 2
    assert parsed.value(name + "_bucket", le="0.25") == 3
    assert parsed.value(name + "_bucket", le="30") == 3
    assert parsed.value(name + "_count") == 4


def test_every_rejection_reason_is_written_from_the_start_so_increase_sees_the_first() -> None:
    counters = collector_metrics.Counters(started=1.0, rejected={"not-json": 2})
    parsed = parse(collector_metrics.text(counters, 0))
    series = {
        dict(labels)["reason"]: v
        for labels, v in parsed.series("tlsrpt_collectd_rejected_total").items()
    }
    assert series == dict.fromkeys(REJECT_REASONS, 0) | {"not-json": 2}


# --- error kinds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("POST https://r.example/x (to 192.0.2.1): HTTP 503 Service Unavailable: busy", "http-5xx"),
        ("POST https://r.example/x (to 192.0.2.1): HTTP 404 Not Found", "http-4xx"),
        ("POST https://r.example/x (to 192.0.2.1): HTTP 302 Found (redirect to /y, not followed)",
         "http-other"),
        ("POST https://r.example/x: cannot resolve r.example: SERVFAIL", "dns"),
        ("MX lookup for m.example timed out", "dns"),
        ("m.example has no mail host (null MX or no such domain)", "dns"),
        ("relay 127.0.0.1:25 answered 451 4.3.0 try later to MAIL FROM", "smtp-4xx"),
        ("relay 127.0.0.1:25 refused every recipient: a@b.example: 550 5.1.1 no such user",
         "smtp-5xx"),
        ("no MX host of b.example took the report: MX host mx.b.example (b.example) answered "
         "554 5.7.1 go away to the message data", "smtp-5xx"),
        ("POST https://tls.example/x (to 192.0.2.1): timed out after 5s connecting (TCP or TLS "
         "handshake) (reporter.https.timeout)", "timeout"),
        ("POST https://r.example/x (to 192.0.2.1): TLS certificate not accepted: [SSL] x", "tls"),
        ("relay 127.0.0.1:25: connect failed: Error connecting to 127.0.0.1 on port 25", "connect"),
        ("POST https://evil.test/collect refused: 10.1.2.3 is a private address", "refused"),
        ("cannot POST a report to 'http://x': scheme 'http' is not https", "refused"),
        ("something nobody expected", "other"),
    ],
)  # fmt: skip
def test_stored_error_texts_are_classified(text: str, kind: str) -> None:
    assert error_kinds.of_text(text) == kind


def test_exceptions_are_classified_by_status_reply_stage_and_cause() -> None:
    assert error_kinds.of_exception(https.HttpsDeliveryError("x", status=502)) == "http-5xx"
    assert error_kinds.of_exception(https.ForbiddenAddress("x")) == "refused"
    reply = smtp.SmtpDeliveryError("x", permanent=False, reply="421 4.7.0 later", stage="EHLO")
    assert error_kinds.of_exception(reply) == "smtp-4xx"
    starttls = smtp.SmtpDeliveryError("x", permanent=False, stage="STARTTLS")
    assert error_kinds.of_exception(starttls) == "tls"
    for cause, kind in [
        (ssl.SSLCertVerificationError("bad cert"), "tls"),
        (TimeoutError(), "timeout"),
        (ConnectionRefusedError(), "connect"),
    ]:
        try:
            try:
                raise cause
            except OSError as inner:
                # A wrapper around the real cause, as httpx and aiosmtplib do.
                raise RuntimeError("wrapped") from inner
        except RuntimeError as outer:
            failed = https.HttpsDeliveryError("POST x: failed")
            failed.__cause__ = outer
            assert error_kinds.of_exception(failed) == kind, cause
    assert set(error_kinds.KINDS) >= {"dns", "smtp-5xx", "http-4xx", "other"}


# --- the collector's metrics file ------------------------------------------------------------


def read_metrics(path: Path) -> Parsed:
    return parse(path.read_text())


def wait_for_metrics(
    path: Path, check: Callable[[Parsed], bool], c: Collector, timeout: float = 30.0
) -> Parsed:
    deadline = time.monotonic() + timeout
    last: Parsed | None = None
    while time.monotonic() < deadline:
        if path.exists():
            last = read_metrics(path)
            if check(last):
                return last
        time.sleep(0.05)
    raise AssertionError(f"metrics never matched; last: {last}\n{c.log()}")


def test_metrics_file_counts_what_the_collector_did_and_is_replaced_atomically(
    make_collector: MakeCollector, shared_dir: Path
) -> None:
    prom = shared_dir / "collectd.prom"
    c = make_collector(metrics_file=prom).start()
    reads = 0
    broken: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        # Whatever moment a reader opens the file, it gets a whole one.
        nonlocal reads
        while not stop.is_set():
            try:
                text = prom.read_text()
            except FileNotFoundError:
                continue
            try:
                parsed = parse(text)
                assert "tlsrpt_collectd_start_time_seconds" in parsed.types
            except AssertionError as exc:
                broken.append(f"{exc}: {text!r}")
            reads += 1

    watcher = threading.Thread(target=reader)
    watcher.start()
    good, not_json, not_object = 0, 0, 0
    try:
        for round_ in range(8):
            batch = [ok(f"d{round_}-{i}.example") for i in range(50)]
            batch += [b"not json at all"] * 7 + [b"[1, 2]"] * 2
            send_all(c.socket, batch)
            good, not_json, not_object = good + 50, not_json + 7, not_object + 2
            time.sleep(0.3)
        final = wait_for_metrics(
            prom, lambda p: p.value("tlsrpt_collectd_accepted_total") == good, c
        )
        final = wait_for_metrics(
            prom, lambda p: p.value("tlsrpt_collectd_datagrams_waiting") == 0, c
        )
    finally:
        stop.set()
        watcher.join()
    assert not broken, broken[:3]
    assert reads > 20
    assert final.types["tlsrpt_collectd_accepted_total"] == "counter"
    assert final.value("tlsrpt_collectd_received_total") == good + not_json + not_object
    assert final.value("tlsrpt_collectd_rejected_total", reason="not-json") == not_json
    assert final.value("tlsrpt_collectd_rejected_total", reason="not-object") == not_object
    assert final.value("tlsrpt_collectd_failure_details_capped_total") == 0
    assert final.value("tlsrpt_collectd_dropped_total", reason="memory-full") == 0
    flushes = final.value("tlsrpt_collectd_flushes_total")
    assert flushes >= 1
    assert final.value("tlsrpt_collectd_flush_errors_total") == 0
    assert final.value("tlsrpt_collectd_flush_duration_seconds_count") == flushes
    assert 0 < final.value("tlsrpt_collectd_last_flush_duration_seconds") < 10
    assert final.value("tlsrpt_collectd_pending_keys") == 0
    started = final.value("tlsrpt_collectd_start_time_seconds")
    assert (
        time.time() - 120 < started <= final.value("tlsrpt_collectd_last_flush_timestamp_seconds")
    )
    # The file agrees with the database the same flushes wrote.
    stored = c.counters()
    assert stored["accepted"] == good and stored["rejected:not-json"] == not_json
    assert c.stop() == 0
    # The last counts are written on the way out, and no temporary file is left behind.
    assert read_metrics(prom).value("tlsrpt_collectd_accepted_total") == good
    assert [p.name for p in shared_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_a_metrics_file_in_a_missing_directory_is_logged_once_and_collecting_goes_on(
    make_collector: MakeCollector, shared_dir: Path
) -> None:
    prom = shared_dir / "no-such-dir" / "collectd.prom"
    c = make_collector(metrics_file=prom).start()
    for n in range(1, 4):
        send_all(c.socket, [ok()])
        c.wait_for_counter("accepted", n)
        time.sleep(1.2)  # past the metrics file's interval: another attempt each round
    assert c.proc is not None and c.proc.poll() is None
    log = c.log()
    assert log.count("cannot write collectd.metrics_file") == 1, log
    assert f"cannot write collectd.metrics_file {prom}: No such file or directory" in log
    assert c.stop() == 0
    assert c.counters()["accepted"] == 3


@pytest.mark.parametrize("value", [5, ["a.prom"], "dir/"])
def test_a_bad_metrics_file_value_fails_check_config_with_exit_2(
    tmp_path: Path, value: object
) -> None:
    config = tmp_path / "config.toml"
    if isinstance(value, list):
        config.write_text('[collectd]\nmetrics_file = ["a.prom"]\n')
    else:
        write_config(config, metrics_file=value)
    for cmd in (
        ["tlsrpt_collectd.daemon", "--check-config"],
        ["tlsrpt_reporter.cli", "check-config"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", *cmd, "--config", str(config)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, (cmd, done.stdout, done.stderr)
        assert "collectd.metrics_file" in done.stdout + done.stderr


# --- status --format prometheus --------------------------------------------------------------


def test_status_prometheus_shows_delivered_retrying_and_given_up_reports(site: Site) -> None:
    from rigs.httpsserver import Reply

    site.web.script(Reply(500), Reply(200))
    sent = site.cli("send", "--now")
    assert sent.returncode == 0, sent.stderr
    before = time.time()
    shown = site.cli("status", "--format", "prometheus")
    assert shown.returncode == 0, shown.stderr
    m = parse(shown.stdout)
    assert all(name.startswith("tlsrpt_reporter_") for name in m.types)
    assert all(kind == "gauge" for kind in m.types.values())
    assert m.value("tlsrpt_reporter_days_built") == 1
    # mail.example and dns.example by mail; web.example got a 500 (retrying); evil.example's
    # rua resolves to a private address (given up); servfail.example waits for DNS.
    assert m.value("tlsrpt_reporter_reports_built") == 5
    reports = {s: m.value("tlsrpt_reporter_reports", status=s) for s in
               ("pending", "sending", "delivered", "given-up", "no-destination")}  # fmt: skip
    assert reports == {
        "pending": 1, "sending": 1, "delivered": 2, "given-up": 1, "no-destination": 0
    }  # fmt: skip
    deliveries = {s: m.value("tlsrpt_reporter_deliveries", state=s) for s in
                  ("pending", "failed-retrying", "sent", "given-up")}  # fmt: skip
    assert deliveries == {"pending": 0, "failed-retrying": 1, "sent": 2, "given-up": 1}
    errors = {
        (dict(labels)["kind"], dict(labels)["state"]): v
        for labels, v in m.series("tlsrpt_reporter_delivery_errors").items()
        if v
    }
    assert errors == {("http-5xx", "failed-retrying"): 1, ("refused", "given-up"): 1}
    assert len(m.series("tlsrpt_reporter_delivery_errors")) == 2 * len(error_kinds.KINDS)
    built = m.value("tlsrpt_reporter_last_build_timestamp_seconds")
    assert before - 120 < built <= before
    sent_at = m.value("tlsrpt_reporter_last_successful_send_timestamp_seconds")
    assert built <= sent_at <= time.time()
    age = m.value("tlsrpt_reporter_oldest_unsent_report_age_seconds")
    assert 0 < age < 120
    assert m.value("tlsrpt_reporter_suppressed_destinations") == 0
    # The sessions of the day built, read from the collector's database: seven sessions, one
    # failed with a certificate-expired detail; every RFC 8460 result type is written.
    assert m.value("tlsrpt_reporter_day_start_timestamp_seconds") == 1_772_323_200  # 2026-03-01
    assert m.value("tlsrpt_reporter_day_sessions") == 7
    assert m.value("tlsrpt_reporter_day_failed_sessions") == 1
    by_type = {
        dict(labels)["result_type"]: v
        for labels, v in m.series("tlsrpt_reporter_day_result_type_failed_sessions").items()
    }
    assert by_type == dict.fromkeys(RESULT_TYPES, 0) | {"certificate-expired": 1}
    assert m.value("tlsrpt_reporter_day_sources_unreadable") == 0
    # --json stays what it was; --format json is the same output.
    as_json = site.cli("status", "--json")
    assert (
        as_json.returncode == 0 and as_json.stdout == site.cli("status", "--format", "json").stdout
    )

    # The retry succeeds: nothing is failing any more, and only servfail.example is unsent.
    assert site.cli("send", "--now").returncode == 0
    m = parse(site.cli("status", "--format", "prometheus").stdout)
    assert m.value("tlsrpt_reporter_reports", status="delivered") == 3
    assert m.value("tlsrpt_reporter_delivery_errors", kind="http-5xx", state="failed-retrying") == 0
    assert m.value("tlsrpt_reporter_delivery_errors", kind="refused", state="given-up") == 1
    # One day only: a day without reports has zeros, never missing series.
    empty = parse(site.cli("status", "--format", "prometheus", "--day", "2026-01-01").stdout)
    assert empty.value("tlsrpt_reporter_reports", status="delivered") == 0
    assert empty.value("tlsrpt_reporter_oldest_unsent_report_age_seconds") == 0
    assert empty.value("tlsrpt_reporter_day_sessions") == 0
    assert empty.value("tlsrpt_reporter_day_start_timestamp_seconds") == 1_767_225_600

    # A source that cannot be read is counted; the state's metrics are still written.
    site.collector_db.rename(site.collector_db.with_suffix(".gone"))
    shown = site.cli("status", "--format", "prometheus")
    assert shown.returncode == 0, shown.stderr
    m = parse(shown.stdout)
    assert m.value("tlsrpt_reporter_day_sources_unreadable") == 1
    assert m.value("tlsrpt_reporter_day_sessions") == 0
    assert m.value("tlsrpt_reporter_reports", status="delivered") == 3


def test_a_version_1_state_database_is_migrated_and_its_errors_classified_from_the_text(
    tmp_path: Path,
) -> None:
    from tlsrpt_reporter.cli import status_metrics
    from tlsrpt_reporter.store import reports as state

    db = tmp_path / "reporter.sqlite"
    conn = state.connect(db)
    # Back to what version 1 created: its three tables, and delivery without the later columns.
    v1_delivery = {"report", "destination", "state", "attempts", "first_attempt",
                   "next_attempt", "accepted_at", "last_error", "detail"}  # fmt: skip
    tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in set(tables) - {"built_day", "report", "delivery"}:
        conn.execute(f"DROP TABLE {table}")
    for _, column, *_rest in conn.execute("PRAGMA table_info(delivery)").fetchall():
        if column not in v1_delivery:
            conn.execute(f"ALTER TABLE delivery DROP COLUMN {column}")
    for column in ("lease_holder", "lease_until"):  # report's columns of version 7
        conn.execute(f"ALTER TABLE report DROP COLUMN {column}")
    conn.execute("PRAGMA user_version = 1")
    row = {"domain": "web.example", "report_id": "r1", "message_id": "<m1@x>", "date": "d",
           "filename": "f", "gzip": b"", "summary": "", "record": "", "send_at": 0.0}  # fmt: skip
    state.insert_day(conn, "2026-03-01", 1000.0, [row])
    conn.execute(
        "INSERT INTO delivery (report, destination, state, next_attempt, last_error)"
        " VALUES (1, 'https://web.example/r', 'failed-retrying', 0,"
        " 'POST https://web.example/r (to 192.0.2.1): HTTP 503 Service Unavailable')"
    )
    conn.close()
    conn = state.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == state.SCHEMA_VERSION
        m = parse(exposition.render(status_metrics.families(conn, 1060.0)))
    finally:
        conn.close()
    assert m.value("tlsrpt_reporter_delivery_errors", kind="http-5xx", state="failed-retrying") == 1
    assert m.value("tlsrpt_reporter_oldest_unsent_report_age_seconds") == 60
    assert m.value("tlsrpt_reporter_reports", status="pending") == 1
