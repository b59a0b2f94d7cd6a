"""Background tasks a process owns: kept referenced, failures logged, cancelled together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine


class TaskSet:
    """Tasks started with :meth:`spawn` live until done (asyncio keeps only weak
    references to tasks), a failure is logged once under ``what``, and
    :meth:`cancel_all` stops every one still running and waits for them.

    An *essential* task is one of the loops the process lives for (the Redis
    subscription, the router link, the timers): if it ends for any reason but
    :meth:`cancel_all`, ``on_essential_exit`` is called so the process stops
    and its supervisor starts a fresh one, instead of heartbeating on with a
    dead loop.
    """

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        on_essential_exit: Callable[[str], None] | None = None,
    ) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self._essential: dict[asyncio.Task[object], str] = {}
        self._log = log
        self._what = what
        self._on_essential_exit = on_essential_exit
        self._cancelling = False

    def spawn(self, coro: Coroutine[object, None, object]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def spawn_essential(self, name: str, coro: Coroutine[object, None, object]) -> None:
        """Start one of the process's own loops: its end, whatever the cause, stops the process."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        self._essential[task] = name
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        failed = not task.cancelled() and task.exception() is not None
        if failed:
            self._log.error("%s task failed", self._what, exc_info=task.exception())
        name = self._essential.pop(task, None)
        if name is not None and not self._cancelling and self._on_essential_exit is not None:
            self._on_essential_exit(name)  # it logs: it knows whether it was stopping anyway

    async def cancel_all(self) -> None:
        self._cancelling = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
