"""The real tlsrpt-collectd daemon on a real socket and SQLite file."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.collector import Collector, send_all
from support.datagrams import canon, ok
from support.protocol import SPEC_RESULT_CODES

from tlsrpt_reporter.wire.encode import datagram, encode_object

MakeCollector = Callable[..., Collector]

STS = {
    "policy-type": 2,
    "policy-domain": "example.com",
    "policy-string": ["version: STSv1", "mode: enforce", "mx: mail.example.com", "max_age: 86400"],
    "mx-host": ["mail.example.com"],
}


def test_every_protocol_field_and_code_round_trips_into_export(
    make_collector: MakeCollector,
) -> None:
    c = make_collector().start()
    full_detail = {
        "c": 304,
        "s": "192.0.2.10",
        "n": "mx.example.net",
        "h": "mx.example.net ESMTP\r\n250 STARTTLS",
        "r": "198.51.100.7",
        "a": "https://example.net/why",
        "f": "tlsa-no-match",
    }
    tlsa = {
        "policy-type": 1,
        "policy-domain": "MX.Example.NET.",
        "policy-string": ["3 1 1 8A9A70596E869BED72C69D97A8895DFA"],
        "failure-details": [full_detail],
        "t": 1,
        "f": 1,
    }
    code_details = [{"c": code, "s": "192.0.2.1"} for code in [*SPEC_RESULT_CODES, 901, 999]]
    grams = [
        datagram("Example.COM.", [{**STS, "t": 0, "f": 0}], "v=TLSRPTv1; rua=mailto:t@example.com"),
        datagram("Example.COM.", [{**STS, "t": 0, "f": 0}], "v=TLSRPTv1; rua=mailto:t@example.com"),
        datagram("example.net", [tlsa], "v=TLSRPTv1;rua=https://r.example.net/t"),
        datagram(
            "codes.example",
            [{"policy-type": 9, "failure-details": code_details, "t": len(code_details), "f": 1}],
        ),
        datagram("bücher.example", [{"policy-type": 9, "t": 0, "f": 0}]),
        datagram(
            "utf8.example",
            [
                {
                    "policy-type": 9,
                    "t": 1,
                    "f": 1,
                    "failure-details": [{"c": 201, "h": b"mx\xff\xfe ESMTP"}],
                }
            ],
        ),
    ]
    send_all(c.socket, grams)
    assert c.stop() == 0
    code_entries = [
        {"result-type": name, "sending-mta-ip": "192.0.2.1", "failed-session-count": 1}
        for name in SPEC_RESULT_CODES.values()
    ]
    code_entries += [
        {"result-type": "validation-failure", "sending-mta-ip": "192.0.2.1",
         "failure-reason-code": reason, "failed-session-count": 1}
        for reason in ("policy-never-finished", "result-code-999")
    ]  # fmt: skip

    def line(domain: str, record: str, policy: dict[str, Any], ok: int, fail: int,
             details: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
        return {
            "day": time.strftime("%Y-%m-%d", time.gmtime()),
            "domain": domain,
            "record": record,
            "policy": policy,
            "summary": {"total-successful-session-count": ok, "total-failure-session-count": fail},
            "failure-details": details,
        }

    expected = [
        line("example.com", "v=TLSRPTv1; rua=mailto:t@example.com",
             {"policy-type": "sts", "policy-domain": "example.com",
              "policy-string": STS["policy-string"], "mx-host": ["mail.example.com"]}, 2, 0, []),
        line("example.net", "v=TLSRPTv1;rua=https://r.example.net/t",
             {"policy-type": "tlsa", "policy-domain": "mx.example.net",
              "policy-string": tlsa["policy-string"]}, 0, 1,
             [{"result-type": "tlsa-invalid", "sending-mta-ip": "192.0.2.10",
               "receiving-mx-hostname": "mx.example.net",
               "receiving-mx-helo": "mx.example.net",
               "receiving-ip": "198.51.100.7", "additional-information": "https://example.net/why",
               "failure-reason-code": "tlsa-no-match", "failed-session-count": 1}]),
        line("codes.example", "", {"policy-type": "no-policy-found",
                                   "policy-domain": "codes.example"}, 0, 1, code_entries),
        line("xn--bcher-kva.example", "", {"policy-type": "no-policy-found",
                                           "policy-domain": "xn--bcher-kva.example"}, 1, 0, []),
        line("utf8.example", "", {"policy-type": "no-policy-found",
                                  "policy-domain": "utf8.example"}, 0, 1,
             [{"result-type": "starttls-not-supported",
               "receiving-mx-helo": "mx\ufffd\ufffd", "failed-session-count": 1}]),
    ]  # fmt: skip
    assert canon(c.export()) == canon(expected)
    counters = c.counters()
    assert counters["received"] == counters["accepted"] == len(grams)
    assert counters["sessions"] == len(grams)
    assert counters["failures"] == 3
    assert counters["failure-details"] == 1 + len(code_details) + 1
    assert counters["utf8-repaired"] == 1
    assert counters["unknown-result-code"] == 1


def bad_datagrams() -> dict[str, bytes]:
    """One datagram per rejection reason (the collector runs with a 2048-byte cap)."""
    policy = {"policy-type": 9, "t": 0, "f": 0}
    deep = b"[" * 40 + b"]" * 40
    return {
        "oversize": datagram("big.example", [policy], "v=TLSRPTv1; rua=mailto:a@b" + "x" * 3000),
        "not-json": b"hello, collector",
        "not-object": b'[{"dpv": "1"}]',
        "unknown-dpv": encode_object({"dpv": "2", "d": "x.example", "policies": [policy]}),
        "missing-field": encode_object({"dpv": "1", "d": "x.example"}),
        "wrong-type": datagram("x.example", [{**policy, "t": "0"}]),
        "bad-value": datagram("x.example", [{**policy, "f": 2}]),
        "unknown-policy-type": datagram("x.example", [{**policy, "policy-type": 3}]),
        "invalid-domain": datagram("not a domain", [policy]),
        "too-deep": datagram("x.example", [policy])[:-1] + b',"x":' + deep + b"}",
    }


def test_each_rejection_is_counted_by_reason_and_neighbours_still_count(
    make_collector: MakeCollector,
) -> None:
    c = make_collector(max_datagram_size=2048).start()
    bad = bad_datagrams()
    stream = []
    for data in bad.values():
        stream += [ok(), data]
    stream += [b"not json either"] * 30 + [ok("last.example")]
    send_all(c.socket, stream)
    assert c.stop() == 0
    counters = c.counters()
    valid = len(bad) + 1
    assert counters["accepted"] == valid
    assert counters["received"] == len(stream)
    assert counters["rejected"] == len(bad) + 30
    for reason in bad:
        expected = 31 if reason == "not-json" else 1
        assert counters[f"rejected:{reason}"] == expected, reason
    summary = {x["domain"]: x["summary"] for x in c.export()}
    assert summary["ok.example"]["total-successful-session-count"] == len(bad)
    assert summary["last.example"]["total-successful-session-count"] == 1
    log = c.log()
    for reason in bad:
        assert f"rejected datagram: {reason}:" in log
    # Repeated rejections of one kind are rate-limited: 31 not-json datagrams, one line.
    assert log.count("rejected datagram: not-json") == 1


def test_sigterm_under_load_stores_everything_the_kernel_accepted(
    make_collector: MakeCollector,
) -> None:
    c = make_collector(flush_interval=0.5).start()
    grams = [ok(f"d{i % 500}.example") for i in range(500)]
    sent = 0
    refused: list[int] = []
    sending = threading.Event()

    def blast() -> None:
        nonlocal sent
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        i = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                sock.sendto(grams[i % len(grams)], socket.MSG_DONTWAIT, str(c.socket))
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
                    time.sleep(0.0001)
                    continue
                refused.append(exc.errno or 0)  # the collector stopped receiving
                break
            sent += 1
            i += 1
            if i == 2000:
                sending.set()
        sock.close()

    sender = threading.Thread(target=blast)
    sender.start()
    assert sending.wait(30)
    time.sleep(0.5)
    assert c.stop() == 0
    sender.join(70)
    assert refused, "the sender should have been refused once the collector stopped"
    assert refused[0] in (errno.EPIPE, errno.ECONNREFUSED, errno.ENOENT)
    assert c.counters()["accepted"] == sent
    assert not c.socket.exists(), "the collector removes the socket file it created"


def receiver_pid(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1
    return int(children[0])


def test_sigkill_loses_at_most_one_interval_and_the_database_opens_clean(
    make_collector: MakeCollector,
) -> None:
    c = make_collector(flush_interval=0.5).start()
    assert c.proc is not None
    child = receiver_pid(c.proc.pid)
    send_all(c.socket, [ok(f"d{i}.example") for i in range(2000)])
    c.wait_for_counter("accepted", 2000)
    send_all(c.socket, [ok(f"late{i}.example") for i in range(300)])
    assert c.stop(signal.SIGKILL) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{child}") and "Z" not in _state(child):
        assert time.monotonic() < deadline, "the receive process outlived the daemon"
        time.sleep(0.05)
    conn = sqlite3.connect(c.db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert 2000 <= c.counters()["accepted"] <= 2300
    # The dead collector's socket file is stale: a new collector replaces it and counts on.
    c.start()
    send_all(c.socket, [ok("after.example")])
    assert c.stop() == 0
    assert any(x["domain"] == "after.example" for x in c.export())


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@contextlib.contextmanager
def locked_after_one(c: Collector, domain: str) -> Iterator[None]:
    """Once ``domain``'s datagram is accepted, hold ``c``'s database locked for the ``with``
    block: the collector cannot write until it ends."""
    send_all(c.socket, [ok(domain)])
    c.wait_for_counter("accepted", 1)
    locker = sqlite3.connect(c.db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("COMMIT")
        locker.close()


def test_locked_database_holds_data_in_memory_says_so_and_catches_up(
    make_collector: MakeCollector,
) -> None:
    c = make_collector(flush_interval=0.2).start()
    with locked_after_one(c, "before.example"):
        send_all(c.socket, [ok(f"held{i}.example") for i in range(1000)])
        c.wait_for_log("CANNOT WRITE DATABASE")
        send_all(c.socket, [ok(f"more{i}.example") for i in range(1000)])
        time.sleep(1.0)
        assert c.proc is not None and c.proc.poll() is None, "the collector kept running"
        assert c.counters()["accepted"] == 1
    c.wait_for_counter("accepted", 2001)
    assert "is writable again" in c.log()
    assert c.stop() == 0
    assert len(c.export()) == 2001


def test_memory_bound_drops_only_new_keys_while_the_database_is_locked(
    make_collector: MakeCollector,
) -> None:
    c = make_collector(max_pending_keys=1000).start()
    with locked_after_one(c, "first.example"):
        send_all(c.socket, [ok(f"n{i}.example") for i in range(1500)])
        c.wait_for_log("memory bound reached")
        # Stop while still locked: the collector drains and folds everything it received before
        # its final flush, so all 1500 met the bound; then let the final flush through.
        assert c.proc is not None
        c.proc.send_signal(signal.SIGTERM)
        c.wait_for_log("stopping")
        time.sleep(1.0)
    assert c.proc.wait(60) == 0
    counters = c.counters()
    assert counters["dropped:memory-full"] > 0
    assert counters["accepted"] + counters["dropped:memory-full"] == 1501
    # Each held success datagram of a new domain costs one key: 1000 keys, 1000 domains.
    assert counters["accepted"] == 1001


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_full_disk_keeps_collecting_and_catches_up_when_space_returns(
    make_collector: MakeCollector,
) -> None:
    c = make_collector()
    disk = c.workdir / "disk"
    disk.mkdir()
    assert os.system(f"mount -t tmpfs -o size=4m tmpfs {disk}") == 0
    try:
        c.db = disk / "collectd.sqlite"
        c.config.write_text(
            c.config.read_text().replace(str(c.workdir / "collectd.sqlite"), str(c.db))
        )
        c.start()
        send_all(c.socket, [ok("before.example")])
        c.wait_for_counter("accepted", 1)
        filler = disk / "filler"
        # Unbuffered: a buffered file keeps what the last write could not place and fails
        # again when closed, depending on how much room the database left.
        with filler.open("wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        send_all(c.socket, [ok(f"d{i}.example") for i in range(1000)])
        c.wait_for_log("CANNOT WRITE DATABASE")
        assert c.proc is not None and c.proc.poll() is None
        filler.unlink()
        c.wait_for_counter("accepted", 1001)
        assert c.stop() == 0
    finally:
        if c.proc is not None and c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()
        os.system(f"umount {disk}")


def test_days_older_than_the_retention_are_deleted_at_start(make_collector: MakeCollector) -> None:
    from tlsrpt_reporter.store import collected as store
    from tlsrpt_reporter.wire.aggregate import Aggregate
    from tlsrpt_reporter.wire.decode import decode

    c = make_collector(retention_days=3)
    agg = Aggregate()
    for day in ("2001-02-03", time.strftime("%Y-%m-%d", time.gmtime(time.time() - 2 * 86400))):
        agg.add(day, 1.0, decode(ok(f"{day}.example")))
    conn = store.connect(c.db)
    store.write(conn, store.build_batch(agg))
    conn.close()
    c.start()
    assert c.stop() == 0
    conn = store.connect(c.db, create=False)
    assert list(store.iter_day(conn, "2001-02-03")) == []
    assert store.day_counters(conn, "2001-02-03") == {}
    kept = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 2 * 86400))
    assert [x["domain"] for x in store.iter_day(conn, kept)] == [f"{kept}.example"]
    conn.close()
