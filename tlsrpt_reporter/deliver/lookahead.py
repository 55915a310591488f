"""Looking a pass's records up a few at a time, and handing the answers over in order.

Resolving a day's reports is one TLSRPT lookup per report: one after another, a pass over
100,000 domains waits for 100,000 round trips to the resolver (tens of milliseconds each when
its cache is cold). :func:`in_order` keeps up to ``most`` lookups in flight while the caller
stores the answers strictly in the order of the items, so what depends on order (the daily cap
per destination counts the reports stored before) comes out as it would one by one.

The window opens slowly: one lookup at first, twice as many after each answer, back to one
after a lookup that got none. A resolver that is down is therefore asked as often as one at a
time would be (``deliver.resolver.UNREACHABLE_AFTER``), not ``most`` times at once.

Plain asyncio, no I/O of its own: what an item is and how it is looked up is the caller's.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def in_order(
    items: Iterable[T],
    work: Callable[[T], Awaitable[R]],
    most: int,
    answered: Callable[[R], bool | None],
) -> AsyncGenerator[list[tuple[T, R]], None]:
    """``(item, await work(item))`` for every item, in the order of ``items``, in batches: each
    batch is every finished one at the head of the line, so the caller can store a batch in
    one transaction. At most ``most`` works run at once; ``answered(result)`` widens the window
    (True), closes it to one (False) or leaves it (None: no lookup was made).

    ``work`` must not raise (return the failure instead): an exception ends the iteration
    and cancels the works in flight. Use it under ``contextlib.aclosing`` or run it to the end.
    """
    source = iter(items)
    line: collections.deque[tuple[T, asyncio.Future[R]]] = collections.deque()
    width = 1
    exhausted = False
    try:
        while True:
            while not exhausted and len(line) < width:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                line.append((item, asyncio.ensure_future(work(item))))
            if not line:
                return
            await asyncio.wait([line[0][1]])
            batch: list[tuple[T, R]] = []
            while line and line[0][1].done():
                item, future = line.popleft()
                result = future.result()
                verdict = answered(result)
                if verdict is not None:
                    width = min(max(most, 1), width * 2) if verdict else 1
                batch.append((item, result))
            yield batch
    finally:
        for _, future in line:
            future.cancel()
        await asyncio.gather(*(future for _, future in line), return_exceptions=True)
