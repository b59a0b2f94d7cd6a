"""Worker-wide timers that visit only the connections that are due.

Two shapes cover every per-connection timer this gateway needs:

* :class:`Deadlines`: one fixed duration for everyone (auth timeout, maximum
  connection time), so insertion order is expiry order and a deque suffices;
  entries for connections that moved on are skipped when they come due.
* :class:`PingWheel`: keepalive pings every ``interval`` seconds; connections
  are spread over ``interval`` one-second slots and each tick visits one slot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Deadlines(Generic[T]):
    __slots__ = ("_duration", "_queue")

    def __init__(self, duration: float) -> None:
        self._duration = duration
        self._queue: deque[tuple[float, T]] = deque()

    def add(self, item: T, now: float) -> None:
        self._queue.append((now + self._duration, item))

    def pop_due(self, now: float) -> Iterator[T]:
        queue = self._queue
        while queue and queue[0][0] <= now:
            yield queue.popleft()[1]

    def __len__(self) -> int:
        return len(self._queue)


class PingWheel(Generic[T]):
    __slots__ = ("_cursor", "_slots")

    def __init__(self, interval: int) -> None:
        self._slots: list[set[T]] = [set() for _ in range(interval)]
        self._cursor = 0

    def add(self, item: T) -> int:
        """Put ``item`` in the slot visited last from now (a full interval away)."""
        slot = (self._cursor - 1) % len(self._slots)
        self._slots[slot].add(item)
        return slot

    def remove(self, item: T, slot: int) -> None:
        if 0 <= slot < len(self._slots):
            self._slots[slot].discard(item)

    def advance(self) -> list[T]:
        """Move one slot on and return its members (each visited once per interval)."""
        members = list(self._slots[self._cursor])
        self._cursor = (self._cursor + 1) % len(self._slots)
        return members

    def __len__(self) -> int:
        return sum(len(s) for s in self._slots)
