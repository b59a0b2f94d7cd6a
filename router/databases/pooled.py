"""What the PostgreSQL and MySQL back ends share: a bounded pool opened on first use.

A subclass says how to open its driver's pool, run the mounts query on it and
close it; the pool's lifecycle, the deadline and the mapping of every driver
error to :class:`DatabaseUnavailable` are kept here once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

from router.databases.base import DatabaseTarget, Dialect, MountRow, describe_error, mounts_query
from shared.errors import DatabaseUnavailable


class PooledDatabase:
    """A bounded driver pool, created on the first query so construction does no I/O."""

    dialect: ClassVar[Dialect]
    name: ClassVar[str]  # for error messages: "PostgreSQL", "MySQL"

    def __init__(
        self,
        target: DatabaseTarget,
        prefix: str,
        *,
        pool_size: int,
        timeout: float,
        connect_timeout: float,
    ) -> None:
        self._target = target
        self._query = mounts_query(self.dialect, prefix)
        self._pool_size = pool_size
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._pool: Any = None
        # Two callers racing to create the pool must not create two.
        self._pool_lock = asyncio.Lock()
        self._closed = False

    async def _open_pool(self) -> Any:
        """The driver's pool for ``self._target``, opening no connection yet."""
        raise NotImplementedError

    async def _fetch_rows(self, pool: Any, storage: int) -> Sequence[Sequence[Any]]:
        """The mounts query's rows for ``storage``."""
        raise NotImplementedError

    async def _close_pool(self, pool: Any) -> None:
        """Close ``pool`` within ``self._timeout``, forcibly if it does not close."""
        raise NotImplementedError

    async def _get_pool(self) -> Any:
        async with self._pool_lock:
            if self._closed:
                raise DatabaseUnavailable("database connection closed")
            if self._pool is None:
                self._pool = await self._open_pool()
            return self._pool

    async def fetch_mounts(self, storage: int) -> list[MountRow]:
        try:
            async with asyncio.timeout(self._timeout):
                rows = await self._fetch_rows(await self._get_pool(), storage)
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            # Drivers raise many unrelated types (OSError, TimeoutError, their
            # own errors, ...): all mean "the database failed" to the caller.
            raise DatabaseUnavailable(f"{self.name} query failed: {describe_error(exc)}") from exc
        # A NULL root path cannot be a prefix of anything; skip such rows.
        return [(str(r[0]), str(r[1])) for r in rows if r[1] is not None]

    async def close(self) -> None:
        async with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            await self._close_pool(pool)
