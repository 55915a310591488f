"""Running a pass's deliveries side by side: one lane per host at a time, a bounded number of
lanes at once.

A receiver that accepts the connection and then trickles bytes holds its attempt until the
attempt's deadline; run one after another, a handful of such hosts would delay every other
report by that much each. Here each host's deliveries still go one after another (no host
gets more than one connection from a pass), while up to ``lanes`` hosts are served at once.

Plain asyncio, no I/O of its own: what an item means and how it is delivered is the caller's.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def run_lanes(
    groups: Sequence[Sequence[T]], lanes: int, work: Callable[[T], Awaitable[None]]
) -> None:
    """Await ``work(item)`` for every item: the items of one group in order, one at a time;
    at most ``lanes`` groups at once, taken in the order given.

    An exception from ``work`` stops the other lanes (their current item is cancelled) and is
    raised as it is, not inside an ExceptionGroup, so callers catch what they always caught.
    """
    waiting = collections.deque(groups)

    async def lane() -> None:
        while waiting:
            for item in waiting.popleft():
                await work(item)

    tasks = [asyncio.create_task(lane()) for _ in range(min(max(lanes, 1), len(groups)))]
    if not tasks:
        return
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        # Also when the pass itself is cancelled: no lane outlives it.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            raise failure
