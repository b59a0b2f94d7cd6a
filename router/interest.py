"""The user -> workers interest table.

Workers register each connection they open (``admit``) and close
(``release``); a worker that (re)connects replaces its whole share with its
``Hello``. The table answers which workers hold a user and enforces the
per-user connection limit across the whole gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

USER_CONNECTION_LIMIT = 64


class InterestTable:
    __slots__ = ("_by_user", "_connections", "_limit", "_totals")

    def __init__(self, limit: int = USER_CONNECTION_LIMIT) -> None:
        self._limit = limit
        # user -> {worker_id: open connections}; a user is absent when it has none.
        self._by_user: dict[str, dict[int, int]] = {}
        self._totals: dict[str, int] = {}
        self._connections = 0

    def admit(self, worker: int, user: str) -> bool:
        """Count one more connection of ``user`` on ``worker``, unless the limit is reached."""
        if self._totals.get(user, 0) >= self._limit:
            return False
        self._add(worker, user, 1)
        return True

    def release(self, worker: int, user: str) -> None:
        workers = self._by_user.get(user)
        if workers is None or worker not in workers:
            return
        self._add(worker, user, -1)

    def replace_worker(self, worker: int, users: Mapping[str, int]) -> None:
        """Make ``users`` the exact share of ``worker`` (sent on every link (re)connect)."""
        self.drop_worker(worker)
        for user, count in users.items():
            if count > 0:
                self._add(worker, user, count)

    def drop_worker(self, worker: int) -> None:
        for user in [u for u, ws in self._by_user.items() if worker in ws]:
            self._add(worker, user, -self._by_user[user][worker])

    def workers_for(self, user: str) -> Iterable[int]:
        return self._by_user.get(user, ())

    def connections_of(self, user: str) -> int:
        return self._totals.get(user, 0)

    @property
    def active_connections(self) -> int:
        return self._connections

    @property
    def active_users(self) -> int:
        return len(self._totals)

    def _add(self, worker: int, user: str, delta: int) -> None:
        workers = self._by_user.setdefault(user, {})
        count = workers.get(worker, 0) + delta
        if count > 0:
            workers[worker] = count
        else:
            delta -= count  # never count below zero
            workers.pop(worker, None)
        total = self._totals.get(user, 0) + delta
        if total > 0:
            self._totals[user] = total
        else:
            self._totals.pop(user, None)
        if not workers:
            del self._by_user[user]
        self._connections += delta
