"""PostgreSQL back end on asyncpg (imported on first use, not at import time)."""

from __future__ import annotations

import asyncio
from typing import Any

from router.databases.base import DatabaseTarget, MountRow, describe_error, mounts_query
from shared.errors import UpstreamError


class PostgresDatabase:
    """A bounded asyncpg pool, created on the first query so construction does no I/O."""

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
        self._query = mounts_query("postgres", prefix)
        self._pool_size = pool_size
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._pool: Any = None
        # Two callers racing to create the pool must not create two.
        self._pool_lock = asyncio.Lock()
        self._closed = False

    async def _get_pool(self) -> Any:
        async with self._pool_lock:
            if self._closed:
                raise UpstreamError("database connection closed")
            if self._pool is None:
                import asyncpg  # lazy: only PostgreSQL users need the driver

                t = self._target
                pool = asyncpg.create_pool(
                    host=t.socket or t.host,
                    port=t.port,
                    user=t.user,
                    password=t.password,
                    database=t.database,
                    ssl=t.sslmode,
                    # min_size=0: no connection is opened until a query needs
                    # one, so a database that is down at start-up is not fatal.
                    min_size=0,
                    max_size=self._pool_size,
                    timeout=self._connect_timeout,
                    command_timeout=self._timeout,
                    # An idle router should not pin server connections forever.
                    max_inactive_connection_lifetime=60.0,
                    server_settings={"application_name": "notify-push-gateway"},
                )
                await pool  # with min_size=0 this only initialises the pool object
                self._pool = pool
            return self._pool

    async def fetch_mounts(self, storage: int) -> list[MountRow]:
        try:
            async with asyncio.timeout(self._timeout):
                pool = await self._get_pool()
                records = await pool.fetch(self._query, storage)
        except UpstreamError:
            raise
        except Exception as exc:
            # Drivers raise many unrelated types (OSError, TimeoutError,
            # asyncpg.PostgresError, ...): all mean "the database failed".
            raise UpstreamError(f"PostgreSQL query failed: {describe_error(exc)}") from exc
        # A NULL root path cannot be a prefix of anything; skip such rows.
        return [(r[0], r[1]) for r in records if r[1] is not None]

    async def close(self) -> None:
        async with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    await pool.close()
            except (TimeoutError, OSError):
                pool.terminate()
