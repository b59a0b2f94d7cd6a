"""PostgreSQL back end on asyncpg (imported on first use, not at import time)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from router.databases.pooled import PooledDatabase


class PostgresDatabase(PooledDatabase):
    """A bounded asyncpg pool."""

    dialect = "postgres"
    name = "PostgreSQL"

    async def _open_pool(self) -> Any:
        import asyncpg  # lazy: only PostgreSQL users need the driver

        t = self._target
        pool = asyncpg.create_pool(
            host=t.socket or t.host,
            port=t.port,
            user=t.user,
            password=t.password,
            # libpq's default for a URL without a database: the user's name.
            database=t.database or t.user or "postgres",
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
        return pool

    async def _fetch_rows(self, pool: Any, storage: int) -> Sequence[Sequence[Any]]:
        records: Sequence[Sequence[Any]] = await pool.fetch(self._query, storage)
        return records

    async def _close_pool(self, pool: Any) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await pool.close()
        except (TimeoutError, OSError):
            pool.terminate()
