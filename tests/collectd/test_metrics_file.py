"""``tlsrpt_collectd.metrics_file.MetricsFile`` directly, on a real file system under asyncio:
what it writes and how often, that a hung write is never doubled, that a failing path is logged
once per problem without stopping anything, the final write at shutdown, and "" meaning off."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from support.site import session

from tlsrpt_collectd import metrics
from tlsrpt_collectd.metrics_file import EVERY, MetricsFile
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode

LOGGER = "tlsrpt-collectd"


def counters(received: int = 7) -> metrics.Counters:
    return metrics.Counters(started=1_770_000_000.0, received=received, accepted=received - 2)


async def settle() -> None:
    """Wait for every task publish() started (a write runs in a worker thread)."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*others)  # a write that raised would raise here


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(30):  # in this task: settle() must not wait for itself
            await test()

    asyncio.run(bounded())


def value(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


def test_publish_writes_the_counters_in_prometheus_text(tmp_path: Path) -> None:
    path = tmp_path / "tlsrpt_collectd.prom"

    async def main() -> None:
        mf = MetricsFile(str(path), counters(received=7), Aggregate())
        mf.publish(100.0)
        await settle()

    run(main)
    text = path.read_text()
    assert text == metrics.text(counters(received=7), 0)
    assert value(text, "tlsrpt_collectd_received_total") == 7
    assert value(text, "tlsrpt_collectd_accepted_total") == 5
    assert "# TYPE tlsrpt_collectd_received_total counter" in text
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # node-exporter must read it
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left


def test_publish_rewrites_the_file_at_most_once_per_every_seconds(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    c = counters(received=1)

    def received() -> float:
        return value(path.read_text(), "tlsrpt_collectd_received_total")

    async def main() -> None:
        mf = MetricsFile(str(path), c, Aggregate())
        mf.publish(100.0)
        await settle()
        assert received() == 1
        c.received = 2
        mf.publish(100.0 + EVERY / 2)  # too soon: skipped
        await settle()
        assert received() == 1
        mf.publish(100.0 + EVERY)  # a full interval after the last write
        await settle()
        assert received() == 2
        c.received = 3
        mf.publish(100.0 + EVERY * 1.5)
        await settle()
        assert received() == 2

    run(main)


def test_a_snapshot_keeps_the_counts_of_its_moment_while_the_daemon_counts_on() -> None:
    """The worker thread renders a snapshot while the event loop goes on counting."""
    c = counters(received=1)
    c.rejected["not-json"] = 1
    snapshot = c.snapshot()
    before = metrics.text(snapshot, 0)
    c.received += 1
    c.rejected["not-json"] += 1
    c.forms["dpv-1"] += 1
    c.dropped["memory-full"] += 1
    c.flushed(0.1, 2.0, 2)
    assert metrics.text(snapshot, 0) == before != metrics.text(c, 0)
    assert value(before, "tlsrpt_collectd_received_total") == 1


def test_the_pending_key_count_comes_from_the_aggregate(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    agg = Aggregate()
    agg.counters[("2026-03-01", "x")] = 1  # not a key: only policies and details count
    assert len(agg) == 0

    async def main() -> None:
        MetricsFile(str(path), counters(), agg).publish(1.0)
        await settle()

    run(main)
    assert value(path.read_text(), "tlsrpt_collectd_pending_keys") == 0


def test_the_pending_key_count_is_read_at_each_write_not_when_the_file_is_set_up(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.prom"
    agg = Aggregate()

    async def main() -> None:
        mf = MetricsFile(str(path), counters(), agg)
        mf.publish(1.0)
        await settle()
        assert value(path.read_text(), "tlsrpt_collectd_pending_keys") == 0
        agg.add("2026-03-01", 1.0, decode(session("a.example", None)))
        mf.publish(1.0 + EVERY)
        await settle()

    run(main)
    assert len(agg) > 0
    assert value(path.read_text(), "tlsrpt_collectd_pending_keys") == len(agg)


def test_a_hung_write_is_never_joined_by_a_second_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung disk cannot be provoked here (the temporary name is random, so no FIFO can wait
    at it): the real write is held at a gate in its worker thread instead."""
    path = tmp_path / "m.prom"
    entered, gate = threading.Event(), threading.Event()
    contents: list[str] = []
    real_write = metrics.write_atomically

    def held_write(where: str, content: str) -> None:
        contents.append(content)
        entered.set()
        if not gate.wait(30):
            raise AssertionError("the test never released the write")
        real_write(where, content)

    monkeypatch.setattr(metrics, "write_atomically", held_write)
    c = counters(received=1)

    async def main() -> None:
        mf = MetricsFile(str(path), c, Aggregate())
        mf.publish(100.0)
        assert await asyncio.to_thread(entered.wait, 30)  # the worker thread now hangs
        c.received = 2
        mf.publish(100.0 + 10 * EVERY)  # due, but the first write has not finished
        mf.publish(100.0 + 20 * EVERY)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert len(others) == 1  # no second writer was started
        gate.set()
        await settle()
        # Exactly one write reached the file, with the counts of its own time.
        assert contents == [metrics.text(counters(received=1), 0)]
        assert path.read_text() == contents[0]
        # Once it is done, the next turn writes the newer counts.
        mf.publish(100.0 + 30 * EVERY)
        await settle()
        assert value(path.read_text(), "tlsrpt_collectd_received_total") == 2

    run(main)


def test_the_file_is_never_written_through_a_planted_link(tmp_path: Path) -> None:
    """In a directory others may write to, neither a link at the file's name nor one at the
    temporary name earlier versions used (``.NAME.PID.tmp``) redirects the write."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "m.prom"
    path.symlink_to(victim)
    old_name = tmp_path / f".m.prom.{os.getpid()}.tmp"
    old_name.symlink_to(victim)

    async def main() -> None:
        await MetricsFile(str(path), counters(received=3), Aggregate()).write_last()

    run(main)
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink()
    assert value(path.read_text(), "tlsrpt_collectd_received_total") == 3
    assert old_name.is_symlink()  # someone else's: left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == [old_name.name, "m.prom", "victim"]


def test_an_unwritable_path_logs_one_error_per_problem_and_collecting_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    parent = tmp_path / "node-exporter"
    path = parent / "tlsrpt_collectd.prom"
    caplog.set_level(logging.WARNING, logger=LOGGER)

    def records() -> list[tuple[int, str]]:
        return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]

    async def main() -> None:
        mf = MetricsFile(str(path), counters(), Aggregate())
        for second in range(5):  # the directory is missing
            mf.publish(100.0 + second * EVERY)
            await settle()  # no exception escapes the write task
        errors = records()
        assert len(errors) == 1
        level, message = errors[0]
        assert level == logging.ERROR
        assert f"cannot write collectd.metrics_file {path}: No such file or directory" in message
        assert "collecting goes on" in message

        parent.write_text("a file where the directory should be")
        for second in range(5, 9):  # a different problem: logged once more
            mf.publish(100.0 + second * EVERY)
            await settle()
        assert len(records()) == 2
        assert records()[1][0] == logging.ERROR
        assert "Not a directory" in records()[1][1]

        parent.unlink()
        parent.mkdir()
        mf.publish(100.0 + 10 * EVERY)
        await settle()
        assert records()[2:] == [
            (logging.WARNING, f"collectd.metrics_file {path} is written again")
        ]
        mf.publish(100.0 + 11 * EVERY)
        await settle()
        assert len(records()) == 3  # "written again" is said once, not on every write

    run(main)
    assert value(path.read_text(), "tlsrpt_collectd_received_total") == 7


def test_the_same_problem_after_a_recovery_is_logged_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    parent = tmp_path / "dir"
    path = parent / "m.prom"
    caplog.set_level(logging.WARNING, logger=LOGGER)

    async def main() -> None:
        mf = MetricsFile(str(path), counters(), Aggregate())
        mf.publish(1.0)
        await settle()
        parent.mkdir()
        mf.publish(2.0)
        await settle()
        parent.rename(tmp_path / "moved")
        mf.publish(3.0)
        await settle()

    run(main)
    levels = [r.levelno for r in caplog.records if r.name == LOGGER]
    assert levels == [logging.ERROR, logging.WARNING, logging.ERROR]


def test_write_last_writes_the_final_counts_even_right_after_a_publish(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    c = counters(received=1)

    async def main() -> None:
        mf = MetricsFile(str(path), c, Aggregate())
        mf.publish(100.0)
        c.received = 42  # counted while the publish may still be running
        await mf.write_last()  # waits for it, then writes the final counts

    run(main)
    assert value(path.read_text(), "tlsrpt_collectd_received_total") == 42


def test_write_last_logs_instead_of_raising_when_the_path_is_unwritable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing" / "m.prom"
    caplog.set_level(logging.WARNING, logger=LOGGER)

    async def main() -> None:
        await MetricsFile(str(path), counters(), Aggregate()).write_last()

    run(main)
    assert [r.levelno for r in caplog.records if r.name == LOGGER] == [logging.ERROR]


def test_an_empty_path_turns_the_file_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative "" would land here if it were used as a name

    async def main() -> None:
        mf = MetricsFile("", counters(), Aggregate())
        mf.publish(100.0)
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        await mf.write_last()

    run(main)
    assert list(tmp_path.iterdir()) == []
