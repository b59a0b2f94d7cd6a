"""Waiting inside a test's event loop for a condition, with a deadline (never a fixed sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.support.processes import timeout

POLL_INTERVAL = 0.001


async def wait_until(condition: Callable[[], object], what: str, seconds: float = 5) -> None:
    """Let the loop run until ``condition()`` is truthy; fail the test after the deadline.

    For conditions no event announces (a log record, a counter, a queue length).
    """
    try:
        async with asyncio.timeout(timeout(seconds)):
            while not condition():  # noqa: ASYNC110 - nothing to wait on but the condition
                await asyncio.sleep(POLL_INTERVAL)
    except TimeoutError:
        raise AssertionError(f"timed out after {seconds} s waiting for {what}") from None
