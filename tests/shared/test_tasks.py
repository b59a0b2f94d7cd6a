"""TaskSet: failures are logged, and cancel_all stops what still runs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.tasks import TaskSet


def test_a_failed_task_is_logged_and_cancel_all_stops_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.tasks")
    stopped: list[str] = []

    async def fails() -> None:
        raise RuntimeError("boom")

    async def runs_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append("forever")

    async def scenario() -> None:
        tasks = TaskSet(log, "test")
        tasks.spawn(fails())
        tasks.spawn(runs_forever())
        for _ in range(3):  # let both start and the failure be reported
            await asyncio.sleep(0)
        await tasks.cancel_all()

    with caplog.at_level(logging.ERROR, logger="test.tasks"):
        asyncio.run(scenario())
    assert stopped == ["forever"]
    assert [r.getMessage() for r in caplog.records] == ["test task failed"]
