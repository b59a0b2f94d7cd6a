"""Database fixtures for the router tests: SQLite always, PostgreSQL and MariaDB when running.

The servers are the local ones this project's machines run: PostgreSQL on
127.0.0.1:5432 (trust auth, user ``postgres``, database ``test``) and MariaDB
on 127.0.0.1:3306 (``root``, empty password, database ``test``). Hosts and
ports can be overridden with TEST_POSTGRES_URL / TEST_MYSQL_URL. A server that
is not there skips its tests, except under CI=true where it fails them.

Every test gets its own random table prefix (``t<hex>_``) and its tables are
dropped afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shared.config import DatabaseTarget, Dialect, parse_database_url
from tests.support.processes import timeout
from tests.support.stub_nextcloud import schema

T = TypeVar("T")

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql://root:@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def run(coro: Awaitable[T]) -> T:
    """Run one scenario on a fresh event loop (no pytest-asyncio in this project)."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout(30)):
            return await coro

    return asyncio.run(bounded())


async def _pg_connect() -> Any:
    import asyncpg

    t = parse_database_url(POSTGRES_URL)
    return await asyncpg.connect(
        host=t.socket or t.host,
        port=t.port,
        user=t.user,
        password=t.password,
        database=t.database,
        timeout=timeout(3),
    )


async def _my_connect() -> Any:
    import asyncmy

    t = parse_database_url(MYSQL_URL)
    return await asyncmy.connect(
        host=t.host,
        port=t.port,
        user=t.user or "",
        password=t.password or "",
        database=t.database,
        connect_timeout=max(1, round(timeout(3))),
        autocommit=True,
    )


async def _pg_run(statements: Sequence[str], mounts: Sequence[schema.Mount], prefix: str) -> None:
    conn = await _pg_connect()
    try:
        for statement in statements:
            await conn.execute(statement)
        if mounts:
            await schema.seed_postgres(conn, mounts, prefix)
    finally:
        await conn.close()


async def _my_run(statements: Sequence[str], mounts: Sequence[schema.Mount], prefix: str) -> None:
    conn = await _my_connect()
    try:
        async with conn.cursor() as cursor:
            for statement in statements:
                await cursor.execute(statement)
        if mounts:
            await schema.seed_mysql(conn, mounts, prefix)
    finally:
        await conn.ensure_closed()


_availability: dict[str, str | None] = {}


def _require_server(dialect: Dialect) -> None:
    """Skip (or under CI fail) unless the server for ``dialect`` answers."""
    if dialect not in _availability:
        connect = _pg_connect if dialect == "postgres" else _my_connect

        async def probe() -> None:
            conn = await connect()
            if dialect == "postgres":
                await conn.close()
            else:
                await conn.ensure_closed()

        try:
            asyncio.run(probe())
            _availability[dialect] = None
        except ImportError as exc:
            _availability[dialect] = f"driver not installed: {exc}"
        except Exception as exc:
            _availability[dialect] = f"{type(exc).__name__}: {exc}"
    reason = _availability[dialect]
    if reason is not None:
        url = POSTGRES_URL if dialect == "postgres" else MYSQL_URL
        message = f"{dialect} server at {url} not available ({reason})"
        if IN_CI:
            pytest.fail(f"CI=true requires it: {message}")
        pytest.skip(message)


@dataclass
class SeededDatabase:
    """Nextcloud tables under a prefix in one database, and a way to add mounts."""

    dialect: Dialect
    url: str
    prefix: str
    seed: Callable[[Sequence[schema.Mount]], None]

    @property
    def target(self) -> DatabaseTarget:
        return parse_database_url(self.url)


def random_prefix() -> str:
    return f"t{secrets.token_hex(4)}_"


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def nextcloud_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SeededDatabase]:
    """Empty Nextcloud tables on each back end (random, non-default prefix)."""
    dialect: Dialect = request.param
    prefix = random_prefix()
    if dialect == "sqlite":
        path = tmp_path / "nextcloud.db"
        with sqlite3.connect(path) as conn:
            schema.create_sqlite(conn, prefix)

        def seed_sqlite(mounts: Sequence[schema.Mount]) -> None:
            conn = sqlite3.connect(path)
            try:
                schema.seed_sqlite(conn, mounts, prefix)
            finally:
                conn.close()

        yield SeededDatabase(dialect, f"sqlite://{path}", prefix, seed_sqlite)
        return

    _require_server(dialect)
    runner = _pg_run if dialect == "postgres" else _my_run
    url = POSTGRES_URL if dialect == "postgres" else MYSQL_URL
    asyncio.run(runner(schema.create_table_statements(dialect, prefix), (), prefix))

    def seed_server(mounts: Sequence[schema.Mount]) -> None:
        asyncio.run(runner((), mounts, prefix))

    try:
        yield SeededDatabase(dialect, url, prefix, seed_server)
    finally:
        asyncio.run(runner(schema.drop_table_statements(dialect, prefix), (), prefix))


class RecordingTransport:
    """A transport that keeps what is written (a router link's far end, in tests)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass
