"""SQLite back end: the stdlib sqlite3 module on one dedicated thread.

sqlite3 calls block, so every call runs on a single-thread executor that owns
the connection; the router's event loop only awaits the result.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from router.databases.base import DatabaseTarget, MountRow, describe_error, mounts_query
from shared.errors import DatabaseUnavailable


class SQLiteDatabase:
    """One connection on one thread, opened lazily; the file must already exist."""

    def __init__(self, target: DatabaseTarget, prefix: str, *, timeout: float) -> None:
        self._path = target.database
        self._query = mounts_query("sqlite", prefix)
        self._timeout = timeout
        # Created on first use so that constructing does not start a thread.
        self._executor: ThreadPoolExecutor | None = None
        # Only ever touched on the executor's thread.
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: a missing file is an error rather than a new empty database
        # (which would silently map every storage to nobody).
        uri = f"file:{quote(self._path)}?mode=rw"
        conn = sqlite3.connect(
            uri, uri=True, timeout=self._timeout, check_same_thread=False, isolation_level=None
        )
        # Nextcloud owns this file; make sure we can never write to it.
        conn.execute("PRAGMA query_only = 1")
        return conn

    def _fetch_blocking(self, storage: int) -> list[MountRow]:
        if self._conn is None:
            self._conn = self._connect()
        try:
            rows = self._conn.execute(self._query, (storage,)).fetchall()
        except sqlite3.Error:
            # Drop the connection so the next call reopens the file (it may
            # have been replaced, e.g. restored from a backup).
            self._close_blocking()
            raise
        return [(str(user), str(root)) for user, root in rows if root is not None]

    def _close_blocking(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def fetch_mounts(self, storage: int) -> list[MountRow]:
        if self._closed:
            raise DatabaseUnavailable("database connection closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-mapping")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                return await loop.run_in_executor(self._executor, self._fetch_blocking, storage)
        except Exception as exc:
            raise DatabaseUnavailable(f"SQLite query failed: {describe_error(exc)}") from exc

    async def close(self) -> None:
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            loop = asyncio.get_running_loop()
            # Close on the owning thread, after any query still queued there.
            await loop.run_in_executor(executor, self._close_blocking)
            executor.shutdown(wait=False)
