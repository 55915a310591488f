"""A pass's lookups a few at a time, the answers in order (deliver.lookahead): pure asyncio,
with lookups that take as long as each test says."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tlsrpt_reporter.deliver.lookahead import in_order


class Lookups:
    """Lookups that finish after ``delay[item]`` seconds with ``answer[item]`` (True: answered,
    False: no answer, None: nothing asked), counting how many run at once."""

    def __init__(self, delay: dict[int, float], answer: dict[int, bool | None] | None = None):
        self.delay = delay
        self.answer = answer or {}
        self.running = 0
        self.peak = 0
        self.started: list[int] = []
        self.running_at_start: list[int] = []
        self.finished: list[int] = []

    async def work(self, item: int) -> tuple[int, bool | None]:
        self.started.append(item)
        self.running_at_start.append(self.running)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.delay.get(item, 0.0))
        finally:
            self.running -= 1
        self.finished.append(item)
        return item, self.answer.get(item, True)


def run(lookups: Lookups, items: list[int], most: int) -> list[list[int]]:
    async def go() -> list[list[int]]:
        batches: list[list[int]] = []
        async for batch in in_order(items, lookups.work, most, lambda r: r[1]):
            assert all(item == result[0] for item, result in batch)
            batches.append([item for item, _ in batch])
        return batches

    return asyncio.run(go())


def test_answers_come_in_the_order_of_the_items_however_the_lookups_finish() -> None:
    # The later items answer first: the caller still stores them in the order given.
    lookups = Lookups({n: 0.05 - n * 0.004 for n in range(12)})
    batches = run(lookups, list(range(12)), most=8)
    assert [item for batch in batches for item in batch] == list(range(12))
    assert lookups.finished != list(range(12)), "the lookups did overlap and finish out of order"
    assert 1 < lookups.peak <= 8


def test_at_most_the_given_number_of_lookups_run_at_once() -> None:
    lookups = Lookups(dict.fromkeys(range(40), 0.01))
    run(lookups, list(range(40)), most=4)
    assert lookups.peak == 4


def test_the_window_opens_one_lookup_at_a_time_and_doubles_with_each_answer() -> None:
    lookups = Lookups(dict.fromkeys(range(7), 0.01))
    batches = run(lookups, list(range(7)), most=16)
    assert batches[0] == [0]
    # The first alone, then two side by side once it answered, then more.
    assert lookups.running_at_start[:3] == [0, 0, 1]
    assert lookups.peak > 2
    assert len(batches) < 7, "what finished together is handed over together"


def test_a_lookup_without_answer_closes_the_window_to_one() -> None:
    """A resolver that is down is asked one lookup at a time, as without the lookahead."""
    silent = dict.fromkeys(range(3, 20), False)
    lookups = Lookups(dict.fromkeys(range(20), 0.01), silent)

    async def go() -> list[int]:
        seen: list[int] = []
        batches = in_order(range(20), lookups.work, 16, lambda r: r[1])
        async with contextlib.aclosing(batches):
            async for batch in batches:
                seen += [item for item, _ in batch]
                if len([i for i in seen if i in silent]) >= 3:
                    break  # the caller stops after three unanswered lookups
        return seen

    seen = asyncio.run(go())
    # Three answered lookups opened the window to 8; item 3 got no answer, and what was in
    # flight then (4 to 10) ran out; after the three unanswered ones no more were started.
    assert seen[:4] == [0, 1, 2, 3]
    assert len(lookups.started) <= 3 + 8
    assert lookups.running == 0, "the lookups still in flight are cancelled"


def test_items_that_ask_nothing_leave_the_window_as_it_is() -> None:
    lookups = Lookups({}, dict.fromkeys(range(10), None))
    batches = run(lookups, list(range(10)), most=16)
    assert lookups.peak == 1
    assert [item for batch in batches for item in batch] == list(range(10))


def test_an_exception_of_a_lookup_ends_the_iteration() -> None:
    async def work(item: int) -> bool:
        if item == 2:
            raise RuntimeError("boom")
        await asyncio.sleep(0.01)
        return True

    async def go() -> None:
        batches = in_order(range(10), work, 8, lambda r: r)
        async with contextlib.aclosing(batches):
            async for _ in batches:
                pass

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(go())
