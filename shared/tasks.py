"""Background tasks a process owns: kept referenced, failures logged, cancelled together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any


class TaskSet:
    """Tasks started with :meth:`spawn` live until done (asyncio keeps only weak
    references to tasks), a failure is logged once under ``what``, and
    :meth:`cancel_all` stops every one still running and waits for them."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = log
        self._what = what

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s task failed", self._what, exc_info=task.exception())

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
