"""Running deliveries in lanes (deliver.lanes): one group's items one after another, at most
``lanes`` groups at once, and a failure raised as it is. Plain asyncio, ordered by events."""

from __future__ import annotations

import asyncio

import pytest

from tlsrpt_reporter.deliver.lanes import run_lanes


def test_a_groups_items_run_one_after_another_in_order() -> None:
    log: list[str] = []

    async def work(item: str) -> None:
        log.append(f"start {item}")
        await asyncio.sleep(0)
        log.append(f"end {item}")

    asyncio.run(run_lanes([["a1", "a2", "a3"], ["b1"]], 4, work))
    a = [entry for entry in log if entry.endswith(("a1", "a2", "a3"))]
    assert a == ["start a1", "end a1", "start a2", "end a2", "start a3", "end a3"]
    assert "start b1" in log


def test_no_more_groups_than_lanes_run_at_once_and_all_finish() -> None:
    running = 0
    peak = 0
    done: list[int] = []

    async def work(item: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(3):  # let the other lanes start, if they may
            await asyncio.sleep(0)
        running -= 1
        done.append(item)

    asyncio.run(run_lanes([[n] for n in range(10)], 3, work))
    assert peak == 3
    assert sorted(done) == list(range(10))


def test_a_failure_stops_the_other_lanes_and_is_raised_as_it_is() -> None:
    cancelled: list[str] = []

    async def main() -> None:
        hanging_started = asyncio.Event()

        async def work(item: str) -> None:
            if item == "hang":
                hanging_started.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.append(item)
                    raise
            await hanging_started.wait()
            raise KeyError(item)

        await run_lanes([["hang"], ["boom"]], 2, work)

    with pytest.raises(KeyError, match="boom"):
        asyncio.run(main())
    assert cancelled == ["hang"]


def test_no_groups_no_lanes() -> None:
    async def work(item: object) -> None:
        raise AssertionError(item)

    asyncio.run(run_lanes([], 4, work))
