"""MySQL/MariaDB back end on asyncmy (imported on first use, not at import time).

asyncmy rather than aiomysql: both speak the same protocol and API (asyncmy
began as a port of PyMySQL/aiomysql), but asyncmy's protocol and row decoding
are compiled with Cython, it is actively released, it drops connections left
mid-result by a cancelled query instead of reusing them, and it is the MySQL
driver Tortoise ORM ships with. aiomysql is pure Python on top of PyMySQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from router.databases.pooled import PooledDatabase


class MySQLDatabase(PooledDatabase):
    """A bounded asyncmy pool."""

    dialect = "mysql"
    name = "MySQL"

    async def _open_pool(self) -> Any:
        import asyncmy  # lazy: only MySQL users need the driver

        t = self._target
        kwargs: dict[str, Any] = {
            "user": t.user or "",
            "password": t.password or "",
            "database": t.database,
            "charset": "utf8mb4",
            # Reads only; autocommit keeps no snapshot open between queries,
            # so a refresh sees mounts Nextcloud added since the last one.
            "autocommit": True,
            "connect_timeout": max(1, round(self._connect_timeout)),
        }
        if t.socket:
            kwargs["unix_socket"] = t.socket
        else:
            kwargs["host"] = t.host
            kwargs["port"] = t.port
        return await asyncmy.create_pool(
            minsize=0,
            maxsize=self._pool_size,
            # Recycle before the server's wait_timeout can cut a connection.
            pool_recycle=600,
            **kwargs,
        )

    async def _fetch_rows(self, pool: Any, storage: int) -> Sequence[Sequence[Any]]:
        async with pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(self._query, (storage,))
            rows: Sequence[Sequence[Any]] = await cursor.fetchall()
            return rows

    async def _close_pool(self, pool: Any) -> None:
        pool.close()
        try:
            async with asyncio.timeout(self._timeout):
                await pool.wait_closed()
        except TimeoutError:
            pool.terminate()
