"""Worker-wide timers that visit only the connections that are due.

Two shapes cover every per-connection timer this gateway needs:

* :class:`Deadlines`: one fixed duration for everyone (auth timeout, maximum
  connection time), so insertion order is expiry order: an insertion-ordered
  map from item to deadline, where a connection that closes or logs in is
  removed at once (O(1)) rather than held until its deadline.
* :class:`PingWheel`: keepalive pings every ``interval`` seconds; connections
  are spread over ``interval`` one-second slots and each tick visits one slot.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
H = TypeVar("H", bound=Hashable)


class Deadlines(Generic[H]):
    __slots__ = ("_duration", "_queue")

    def __init__(self, duration: float) -> None:
        self._duration = duration
        # OrderedDict, not dict: popping from the front of a plain dict that
        # had many deletions scans the dead entries each time.
        self._queue: OrderedDict[H, float] = OrderedDict()

    def add(self, item: H, now: float) -> None:
        self._queue[item] = now + self._duration
        self._queue.move_to_end(item)  # re-added: it now expires last

    def remove(self, item: H) -> None:
        """Forget ``item`` (no-op when it is not waiting)."""
        self._queue.pop(item, None)

    def pop_due(self, now: float) -> list[H]:
        """Remove and return every item whose deadline has passed, oldest first."""
        queue = self._queue
        due: list[H] = []
        while queue:
            item, deadline = next(iter(queue.items()))
            if deadline > now:
                break
            del queue[item]
            due.append(item)
        return due

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[H]:
        """The waiting items, the one due first first (do not add or remove meanwhile)."""
        return iter(self._queue)


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
