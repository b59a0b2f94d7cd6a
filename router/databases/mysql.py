"""MySQL/MariaDB back end on asyncmy (imported on first use, not at import time).

asyncmy rather than aiomysql: both speak the same protocol and API (asyncmy
began as a port of PyMySQL/aiomysql), but asyncmy's protocol and row decoding
are compiled with Cython, it is actively released, it drops connections left
mid-result by a cancelled query instead of reusing them, and it is the MySQL
driver Tortoise ORM ships with. aiomysql is pure Python on top of PyMySQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

from router.databases.base import DatabaseTarget, MountRow, describe_error, mounts_query
from shared.errors import UpstreamError


class MySQLDatabase:
    """A bounded asyncmy pool, created on the first query so construction does no I/O."""

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
        self._query = mounts_query("mysql", prefix)
        self._pool_size = pool_size
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._closed = False

    async def _get_pool(self) -> Any:
        async with self._pool_lock:
            if self._closed:
                raise UpstreamError("database connection closed")
            if self._pool is None:
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
                self._pool = await asyncmy.create_pool(
                    minsize=0,
                    maxsize=self._pool_size,
                    # Recycle before the server's wait_timeout can cut a connection.
                    pool_recycle=600,
                    **kwargs,
                )
            return self._pool

    async def fetch_mounts(self, storage: int) -> list[MountRow]:
        try:
            async with asyncio.timeout(self._timeout):
                pool = await self._get_pool()
                async with pool.acquire() as conn, conn.cursor() as cursor:
                    await cursor.execute(self._query, (storage,))
                    rows = await cursor.fetchall()
        except UpstreamError:
            raise
        except Exception as exc:
            # asyncmy raises OperationalError, OSError, TimeoutError, ...; all
            # mean "the database failed" to the caller.
            raise UpstreamError(f"MySQL query failed: {describe_error(exc)}") from exc
        return [(str(r[0]), str(r[1])) for r in rows if r[1] is not None]

    async def close(self) -> None:
        async with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            try:
                async with asyncio.timeout(self._timeout):
                    await pool.wait_closed()
            except TimeoutError:
                pool.terminate()
