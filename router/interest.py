"""The user -> workers interest table.

Workers register each connection they open (``admit``) and close
(``release``); a worker that (re)connects replaces its whole share with its
``Hello``. The table answers which workers hold a user and enforces the
per-user connection limit across the whole gateway.

Memory matters here (one entry per connected user of the whole gateway), so
the common case, a user with a single connection, is stored as the bare
worker id; only users with several connections get a ``{worker: count}`` map.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

USER_CONNECTION_LIMIT = 64

Entry = int | dict[int, int]


class InterestTable:
    __slots__ = ("_by_user", "_connections", "_limit")

    def __init__(self, limit: int = USER_CONNECTION_LIMIT) -> None:
        self._limit = limit
        # user -> worker id (one connection) or {worker id: connections}; absent: none.
        self._by_user: dict[str, Entry] = {}
        self._connections = 0

    @property
    def limit(self) -> int:
        """Connections one user may hold."""
        return self._limit

    def admit(self, worker: int, user: str) -> bool:
        """Count one more connection of ``user`` on ``worker``, unless the limit is reached."""
        if self.connections_of(user) >= self._limit:
            return False
        self._add(worker, user, 1)
        return True

    def release(self, worker: int, user: str) -> None:
        entry = self._by_user.get(user)
        if entry == worker or (isinstance(entry, dict) and worker in entry):
            self._add(worker, user, -1)

    def replace_worker(self, worker: int, users: Mapping[str, int]) -> None:
        """Make ``users`` the exact share of ``worker`` (sent on every link (re)connect)."""
        self.drop_worker(worker)
        for user, count in users.items():
            if count > 0:
                self._add(worker, user, count)

    def drop_worker(self, worker: int) -> None:
        for user, entry in list(self._by_user.items()):
            if entry == worker:
                self._add(worker, user, -1)
            elif isinstance(entry, dict) and worker in entry:
                self._add(worker, user, -entry[worker])

    def workers_for(self, user: str) -> Collection[int]:
        entry = self._by_user.get(user)
        if entry is None:
            return ()
        return (entry,) if type(entry) is int else entry  # type: ignore[return-value]

    def split(self, users: Iterable[str]) -> dict[int, list[str]]:
        """``users`` grouped by the workers holding them (users held nowhere left out).

        The fan-out of a storage update to thousands of users runs through
        here, so it reads the table directly instead of calling workers_for.
        """
        per_worker: dict[int, list[str]] = {}
        by_user = self._by_user
        for user in users:
            entry = by_user.get(user)
            if entry is None:
                continue
            if type(entry) is int:
                group = per_worker.get(entry)
                if group is None:
                    per_worker[entry] = [user]
                else:
                    group.append(user)
            else:
                for worker in entry:  # type: ignore[union-attr]
                    per_worker.setdefault(worker, []).append(user)
        return per_worker

    def connections_of(self, user: str) -> int:
        entry = self._by_user.get(user)
        if entry is None:
            return 0
        return 1 if type(entry) is int else sum(entry.values())  # type: ignore[union-attr]

    def connections_by_user(self) -> dict[str, int]:
        """Every user's connections over all workers (a full re-registration in Redis)."""
        return {
            user: 1 if type(entry) is int else sum(entry.values())  # type: ignore[union-attr]
            for user, entry in self._by_user.items()
        }

    @property
    def active_connections(self) -> int:
        return self._connections

    @property
    def active_users(self) -> int:
        return len(self._by_user)

    def _add(self, worker: int, user: str, delta: int) -> None:
        entry = self._by_user.get(user)
        counts: dict[int, int]
        if entry is None:
            counts = {}
        elif isinstance(entry, int):
            counts = {entry: 1}
        else:
            counts = entry
        count = counts.get(worker, 0) + delta
        if count > 0:
            counts[worker] = count
        else:
            delta -= count  # never count below zero
            counts.pop(worker, None)
        self._connections += delta
        if not counts:
            del self._by_user[user]
        elif len(counts) == 1 and next(iter(counts.values())) == 1:
            self._by_user[user] = next(iter(counts))
        else:
            self._by_user[user] = counts
