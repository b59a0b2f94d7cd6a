"""Which users see a change on a storage (docs/PROTOCOL.md section 3).

A ``notify_storage_update`` event names a storage and a path; the users to
notify are those with a mount on that storage whose root path is a plain
string prefix of the event's path. The mounts of a storage come from
Nextcloud's database and are cached per storage for 4 to 5 minutes (random per
entry, so entries loaded together do not expire together).

Concurrency rules, all on the router's one event loop:

- single flight: concurrent misses for one storage share one query;
- an expired entry keeps being served while its refresh runs in the
  background, and while the database is down;
- after a failure the database is left alone for a back-off period (1 s
  doubling to 30 s); misses in that period fail at once instead of queueing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain

from router.databases import Database, DatabaseTarget, MountRow, open_database
from shared.errors import DatabaseUnavailable

log = logging.getLogger("router.storage_mapping")

CACHE_TTL_MIN = 240.0
CACHE_TTL_MAX = 300.0
RETRY_MIN = 1.0
RETRY_MAX = 30.0
# Expired entries are still served during an outage, but not forever: the
# sweep drops those this long past expiry, which also bounds the cache to the
# storages that saw events in the last ~15 minutes.
STALE_GRACE = 600.0
SWEEP_INTERVAL = 60.0
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class MappingStatistics:
    """A snapshot of the mapping's counters.

    ``query_count`` counts successful database queries (the notify_push
    metric ``mapping_query_count``), ``query_errors`` failed ones.
    """

    query_count: int
    query_errors: int
    cache_entries: int
    database_up: bool


class _Entry:
    """The mounts of one storage, grouped by root path for fast matching."""

    __slots__ = ("expires_at", "groups")

    def __init__(self, rows: Iterable[MountRow], expires_at: float) -> None:
        by_root: dict[str, dict[str, None]] = {}
        for user, root in rows:
            # A dict keeps first-seen order and drops a user's second mount
            # with the same root.
            by_root.setdefault(root, {})[user] = None
        self.groups: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
            (root, tuple(users)) for root, users in by_root.items()
        )
        self.expires_at = expires_at

    def users_for(self, path: str) -> list[str]:
        matched = [users for root, users in self.groups if path.startswith(root)]
        if len(matched) == 1:
            # The common case (a home storage, a group folder): no merging.
            return list(matched[0])
        if not matched:
            return []
        # A user with mounts at several matching roots is notified once.
        return list(dict.fromkeys(chain.from_iterable(matched)))


class StorageMapping:
    """Storage id and path to the user ids to notify, cached per storage.

    Build with :meth:`from_target`; the constructor takes any
    :class:`router.databases.Database` (tests pass fakes) and a monotonic
    ``clock`` in seconds.
    """

    def __init__(
        self,
        database: Database,
        *,
        description: str = "database",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._description = description  # never contains a password
        self._clock = clock
        self._cache: dict[int, _Entry] = {}
        self._inflight: dict[int, asyncio.Task[_Entry]] = {}
        self._query_count = 0
        self._query_errors = 0
        self._up = True
        self._retry_at = 0.0
        self._backoff = 0.0
        self._next_sweep = 0.0
        self._closed = False

    @classmethod
    def from_target(
        cls,
        target: DatabaseTarget,
        prefix: str,
        *,
        pool_size: int = 4,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> StorageMapping:
        """Prepare the back end for ``target`` (``config.database``); no I/O happens here.

        Raises ValueError for a prefix that is not letters, digits and
        underscores (the configuration has checked it already), ConfigError
        when the database's driver is not installed.
        """
        database = open_database(
            target,
            prefix,
            pool_size=max(1, pool_size),
            timeout=timeout,
            connect_timeout=connect_timeout,
        )
        return cls(database, description=target.masked)

    async def users_for(self, storage: int, path: str) -> list[str]:
        """Distinct user ids whose mount root on ``storage`` is a prefix of ``path``.

        Raises :class:`shared.errors.DatabaseUnavailable` when the storage is not
        cached and the database fails, times out or is in its back-off period.
        """
        entry = self._cache.get(storage)
        if entry is None:
            entry = await self._wait_load(storage)
        elif self._clock() >= entry.expires_at:
            self._start_refresh(storage)
        return entry.users_for(path)

    async def root_user_count(self, storage: int) -> int:
        """How many users have ``storage`` mounted at its root (GET /test/mapping/{id})."""
        return len(await self.users_for(storage, ""))

    def statistics(self) -> MappingStatistics:
        return MappingStatistics(
            query_count=self._query_count,
            query_errors=self._query_errors,
            cache_entries=len(self._cache),
            database_up=self._up,
        )

    async def close(self) -> None:
        """Cancel queries in flight and close the database connections."""
        self._closed = True
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._database.close()
        self._cache.clear()

    async def _wait_load(self, storage: int) -> _Entry:
        task = self._inflight.get(storage)
        if task is None:
            if self._closed:
                raise DatabaseUnavailable("storage mapping is closed")
            if self._clock() < self._retry_at:
                raise DatabaseUnavailable(f"{self._description} is unavailable, retrying later")
            task = self._spawn(storage)
        # shield: a caller that gives up (is cancelled) must not cancel the
        # query the other callers of this storage are waiting for.
        return await asyncio.shield(task)

    def _start_refresh(self, storage: int) -> None:
        if storage in self._inflight or self._closed or self._clock() < self._retry_at:
            return
        self._spawn(storage)

    def _spawn(self, storage: int) -> asyncio.Task[_Entry]:
        task = asyncio.get_running_loop().create_task(
            self._load(storage), name=f"storage-mapping-{storage}"
        )
        self._inflight[storage] = task
        task.add_done_callback(lambda t: self._load_done(storage, t))
        return task

    def _load_done(self, storage: int, task: asyncio.Task[_Entry]) -> None:
        if self._inflight.get(storage) is task:
            del self._inflight[storage]
        # Retrieve the outcome so a refresh nobody awaits does not log
        # "exception was never retrieved"; _load already counted and logged it.
        if not task.cancelled():
            task.exception()

    async def _load(self, storage: int) -> _Entry:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("querying storage mapping for storage %d", storage)
        try:
            rows = await self._database.fetch_mounts(storage)
        except DatabaseUnavailable as exc:
            self._query_errors += 1
            self._mark_down(exc)
            raise
        self._query_count += 1
        self._mark_up()
        now = self._clock()
        entry = _Entry(rows, now + random.uniform(CACHE_TTL_MIN, CACHE_TTL_MAX))
        self._cache[storage] = entry
        if now >= self._next_sweep:
            self._sweep(now)
        return entry

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_INTERVAL
        cutoff = now - STALE_GRACE
        stale = [s for s, e in self._cache.items() if e.expires_at < cutoff]
        for storage in stale:
            del self._cache[storage]

    def _mark_down(self, exc: DatabaseUnavailable) -> None:
        if self._up:
            # Once per outage; the error count carries the rest.
            log.warning("storage mapping: %s failed: %s", self._description, exc)
            self._up = False
            self._backoff = RETRY_MIN
        else:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("storage mapping: %s still failing: %s", self._description, exc)
            self._backoff = min(self._backoff * 2, RETRY_MAX)
        self._retry_at = self._clock() + self._backoff

    def _mark_up(self) -> None:
        if not self._up:
            log.info("storage mapping: %s is reachable again", self._description)
            self._up = True
        self._backoff = 0.0
        self._retry_at = 0.0
