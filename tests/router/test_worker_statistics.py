"""The router's book of worker statistics: counters that never go back, fresh numbers on demand."""

from __future__ import annotations

import asyncio

from router.worker_statistics import WorkerStatisticsBook
from shared.statistics import WorkerStatistics
from tests.support.processes import timeout
from tests.support.waiting import wait_until


def stats(connections: int, total: int) -> WorkerStatistics:
    return WorkerStatistics(active_connections=connections, total_connections=total)


def test_a_restarted_worker_s_counters_carry_on_and_its_gauges_stop() -> None:
    book = WorkerStatisticsBook()
    book.linked(1, pid=100)
    book.linked(2, pid=200)
    book.update(1, stats(3, 10))
    book.update(2, stats(4, 7))
    assert (book.totals().active_connections, book.totals().total_connections) == (7, 17)
    book.unlinked(1)  # worker 1 died: its connections are gone, its count is not
    assert (book.totals().active_connections, book.totals().total_connections) == (4, 17)
    book.linked(1, pid=101)  # a new process, counting from zero
    book.update(1, stats(1, 1))
    assert (book.totals().active_connections, book.totals().total_connections) == (5, 18)
    assert set(book.per_worker()) == {1, 2}


def test_a_worker_that_relinks_in_the_same_process_is_not_counted_twice() -> None:
    book = WorkerStatisticsBook()
    book.linked(1, pid=100)
    book.update(1, stats(2, 5))
    book.unlinked(1)
    book.linked(1, pid=100)
    book.update(1, stats(2, 6))
    assert book.totals().total_connections == 6


def test_wait_fresh_returns_when_every_asked_worker_answered() -> None:
    async def scenario() -> None:
        book = WorkerStatisticsBook()
        book.linked(1, pid=100)
        book.linked(2, pid=200)
        waiter = asyncio.ensure_future(book.wait_fresh({1, 2}))
        await wait_until(lambda: book._waiting, "the waiter to register")
        book.update(1, stats(1, 1))
        assert not waiter.done()
        book.update(2, stats(1, 1))
        async with asyncio.timeout(timeout(5)):
            await waiter

    asyncio.run(scenario())
