"""TaskSet: failures are logged, and cancel_all stops what still runs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.tasks import TaskSet
from tests.support.waiting import wait_until


def test_a_failed_task_is_logged_and_cancel_all_stops_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.tasks")
    stopped: list[str] = []

    async def fails() -> None:
        raise RuntimeError("boom")

    started = asyncio.Event()

    async def runs_forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append("forever")

    async def scenario() -> None:
        tasks = TaskSet(log, "test")
        tasks.spawn(fails())
        tasks.spawn(runs_forever())
        await wait_until(lambda: started.is_set() and caplog.records, "the failure report")
        await tasks.cancel_all()

    with caplog.at_level(logging.ERROR, logger="test.tasks"):
        asyncio.run(scenario())
    assert stopped == ["forever"]
    assert [r.getMessage() for r in caplog.records] == ["test task failed"]


def test_an_essential_loop_that_ends_stops_the_process_but_cancel_all_does_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.tasks")
    ended: list[str] = []

    async def crashes() -> None:
        raise RuntimeError("boom")

    async def returns() -> None:
        return None

    async def runs_forever() -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        tasks = TaskSet(log, "test", ended.append)
        tasks.spawn_essential("crashing", crashes())
        tasks.spawn_essential("returning", returns())
        tasks.spawn_essential("forever", runs_forever())
        tasks.spawn(crashes())  # not essential: logged only
        await wait_until(lambda: len(ended) == 2, "both loops to be reported")
        await tasks.cancel_all()

    with caplog.at_level(logging.ERROR, logger="test.tasks"):
        asyncio.run(scenario())
    assert sorted(ended) == ["crashing", "returning"]  # "forever" was cancelled by us
