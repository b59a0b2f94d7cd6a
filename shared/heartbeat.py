"""Liveness heartbeats from children to the supervisor, and the children's check on it.

Each child writes the monotonic clock (system-wide on Linux) into its slot of
a shared array from inside its event loop; a slot that stops moving means the
loop is stuck, and the supervisor restarts that child.

The beat also looks the other way: a child whose parent is no longer the
supervisor that started it (the supervisor was killed, and the child was
handed to init) stops itself, as a SIGTERM would stop it, so no router or
worker keeps serving unsupervised. The kernel's parent-death signal, set by
the supervisor in each child, usually gets there first; this check covers a
platform without it and the moment before it was set.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from multiprocessing.sharedctypes import SynchronizedArray

log = logging.getLogger("shared.heartbeat")

# An orphaned child still beating this long after it was told to stop is killed.
ORPHAN_KILL_AFTER = 5.0


class Heartbeat:
    """One child's slot of the heartbeat array.

    Built by the supervisor before the fork, so it knows the supervisor's pid.
    """

    __slots__ = ("_array", "_orphaned_at", "_slot", "_status", "_supervisor")

    def __init__(
        self,
        array: SynchronizedArray[float],
        slot: int,
        status: SynchronizedArray[float] | None = None,
    ) -> None:
        self._array = array
        self._slot = slot
        self._status = status
        self._supervisor = os.getpid()
        self._orphaned_at: float | None = None

    def report(self, ready: bool, connections: int) -> None:
        """What the supervisor tells systemd: this child serves (router: subscribed to
        Redis; worker: linked to the router) and the connections it holds."""
        if self._status is not None:
            self._status[2 * self._slot] = 1.0 if ready else 0.0
            self._status[2 * self._slot + 1] = float(connections)

    def beat(self) -> None:
        """Record that the loop runs; stop this process if its supervisor is gone."""
        now = time.monotonic()
        self._array[self._slot] = now
        if os.getppid() != self._supervisor:
            self._orphaned(now)

    def _orphaned(self, now: float) -> None:
        if self._orphaned_at is None:
            self._orphaned_at = now
            log.error("the supervisor (pid %d) is gone; stopping", self._supervisor)
            # The process's own SIGTERM handler stops it in its usual order.
            os.kill(os.getpid(), signal.SIGTERM)
        elif now - self._orphaned_at > ORPHAN_KILL_AFTER:
            log.error("still running %.0f s after the supervisor went; killing", ORPHAN_KILL_AFTER)
            os.kill(os.getpid(), signal.SIGKILL)
