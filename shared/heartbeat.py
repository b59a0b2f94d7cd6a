"""Liveness heartbeats from children to the supervisor.

Each child writes the monotonic clock (system-wide on Linux) into its slot of
a shared array from inside its event loop; a slot that stops moving means the
loop is stuck, and the supervisor restarts that child.
"""

from __future__ import annotations

import time
from multiprocessing.sharedctypes import SynchronizedArray


class Heartbeat:
    __slots__ = ("_array", "_slot")

    def __init__(self, array: SynchronizedArray[float], slot: int) -> None:
        self._array = array
        self._slot = slot

    def beat(self) -> None:
        self._array[self._slot] = time.monotonic()
