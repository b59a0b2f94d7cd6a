"""Every worker's statistics as the router sums them, counters kept across restarts.

A worker reports its statistics (``Stats``) every few seconds and when the
router asks (a scrape wants fresh numbers). Its counters start at zero in each
new worker process, so the counters of a process that has gone are kept here
(``retired``): summed with the live ones, a gateway-wide counter never
decreases while the gateway runs, as Prometheus requires. A worker whose link
dropped but whose process lives (same pid in its next ``Hello``) carries on
with its own numbers; its gauges count only while it is linked.

The router itself may be restarted too (its workers keep their connections
and their counts): the book and the router's own counters are saved to a
file in the gateway's private IPC directory every second, before every
scrape and ``notify_query`` answer, and when the router stops; a new router
starts from them (:meth:`WorkerStatisticsBook.load`). A router killed
outright loses only counts nobody has seen, so no counter that Prometheus
read ever goes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field

from shared.statistics import WorkerStatistics

log = logging.getLogger("router.statistics")

# A scrape waits this long at most for the workers' fresh numbers.
FRESH_TIMEOUT = 0.5


@dataclass(slots=True)
class RouterCounters:
    """The router's own counters (a worker's are its own): events, drops, mapping, logins."""

    events_received: int = 0
    mapping_queries: int = 0
    redis_reconnects: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    #: Its login checks with Nextcloud, in the ``login_*`` fields.
    logins: WorkerStatistics = field(default_factory=WorkerStatistics)

    def plus(self, other: RouterCounters) -> RouterCounters:
        logins = WorkerStatistics()
        logins.add(self.logins)
        logins.add(other.logins)
        dropped = dict(self.dropped)
        for reason, count in other.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        return RouterCounters(
            self.events_received + other.events_received,
            self.mapping_queries + other.mapping_queries,
            self.redis_reconnects + other.redis_reconnects,
            dropped,
            logins,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "events_received": self.events_received,
            "mapping_queries": self.mapping_queries,
            "redis_reconnects": self.redis_reconnects,
            "dropped": self.dropped,
            "logins": self.logins.to_wire(),
        }

    @classmethod
    def from_json(cls, data: object) -> RouterCounters:
        if not isinstance(data, dict) or not isinstance(data.get("dropped"), dict):
            raise ValueError("not router counters")
        return cls(
            int(data["events_received"]),
            int(data["mapping_queries"]),
            int(data["redis_reconnects"]),
            {str(k): int(v) for k, v in data["dropped"].items()},
            WorkerStatistics.from_wire(data["logins"]),
        )


class WorkerStatisticsBook:
    def __init__(self) -> None:
        self._latest: dict[int, WorkerStatistics] = {}
        self._pids: dict[int, int] = {}
        self._linked: set[int] = set()
        self.retired = WorkerStatistics()  # counters of worker processes that have ended
        self._waiting: list[tuple[set[int], asyncio.Future[None]]] = []

    def linked(self, worker: int, pid: int) -> None:
        """``worker`` (process ``pid``) linked; a new process retires the old one's counters."""
        if self._pids.get(worker) not in (None, pid):
            old = self._latest.pop(worker, None)
            if old is not None:
                self.retired.add(old.counters())
        self._pids[worker] = pid
        self._linked.add(worker)

    def unlinked(self, worker: int) -> None:
        """Its counters still count (its process may live on); its gauges no longer do."""
        self._linked.discard(worker)
        self._answered(worker)

    def update(self, worker: int, stats: WorkerStatistics) -> None:
        self._latest[worker] = stats
        self._answered(worker)

    def per_worker(self) -> dict[int, WorkerStatistics]:
        """The latest statistics of each linked worker."""
        return {w: s for w, s in self._latest.items() if w in self._linked}

    def totals(self) -> WorkerStatistics:
        """Every counter since the gateway started; the gauges of linked workers."""
        total = WorkerStatistics()
        total.add(self.retired)
        for worker, stats in self._latest.items():
            total.add(stats if worker in self._linked else stats.counters())
        return total

    async def wait_fresh(self, asked: set[int]) -> None:
        """Wait until every worker in ``asked`` has reported again (or gone), at most a moment."""
        pending = asked & self._linked
        if not pending:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pending, done)
        self._waiting.append(entry)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FRESH_TIMEOUT):
                    await asyncio.shield(done)
        finally:
            with contextlib.suppress(ValueError):
                self._waiting.remove(entry)

    def save(self, path: str, router: RouterCounters) -> None:
        """Write the book and ``router`` to ``path`` (replaced atomically)."""
        data = {
            "retired": self.retired.to_wire(),
            "workers": {
                str(worker): {"pid": self._pids.get(worker, 0), "stats": stats.to_wire()}
                for worker, stats in self._latest.items()
            },
            "router": router.to_json(),
        }
        try:
            with open(path + ".tmp", "w") as f:
                json.dump(data, f)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            log.warning("could not save the counters to %s: %s", path, exc)

    @classmethod
    def load(cls, path: str) -> tuple[WorkerStatisticsBook, RouterCounters]:
        """What an earlier router of this gateway saved; empty when there is nothing."""
        book = cls()
        try:
            with open(path) as f:
                data = json.load(f)
            book.retired = WorkerStatistics.from_wire(data["retired"])
            for worker, entry in data["workers"].items():
                # Not linked: the worker's next Hello says whether its process lives on.
                book._pids[int(worker)] = int(entry["pid"])
                book._latest[int(worker)] = WorkerStatistics.from_wire(entry["stats"])
            return book, RouterCounters.from_json(data["router"])
        except FileNotFoundError:
            return cls(), RouterCounters()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring the saved counters in %s: %s", path, exc)
            return cls(), RouterCounters()

    def _answered(self, worker: int) -> None:
        for pending, done in self._waiting:
            pending.discard(worker)
            if not pending and not done.done():
                done.set_result(None)
