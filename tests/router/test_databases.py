"""Database back ends: URL parsing, the Nextcloud schema, fetching, pooling, sockets."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from router.databases import (
    DatabaseTarget,
    mounts_query,
    open_database,
    validate_prefix,
)
from shared.config import load_config, parse_database_url
from shared.errors import ConfigError, DatabaseUnavailable
from tests.router.conftest import (
    SeededDatabase,
    _my_connect,
    _pg_connect,
    _require_server,
    random_prefix,
    run,
)
from tests.support.processes import timeout
from tests.support.stub_nextcloud import schema
from tests.support.stub_nextcloud.schema import Mount

# -- URL parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgres://nc:p%40ss@db.example:6432/nextcloud",
            DatabaseTarget("postgres", "nextcloud", "db.example", 6432, "nc", "p@ss"),
        ),
        (
            "postgresql://nc:pw@/nextcloud?host=/run/postgresql",
            DatabaseTarget("postgres", "nextcloud", None, 5432, "nc", "pw", "/run/postgresql"),
        ),
        (
            "postgres://nc@[::1]/nc?sslmode=require",
            DatabaseTarget("postgres", "nc", "::1", 5432, "nc", None, sslmode="require"),
        ),
        (
            "mysql://nc:pw@db:3307/nextcloud",
            DatabaseTarget("mysql", "nextcloud", "db", 3307, "nc", "pw"),
        ),
        (
            "mysql://nc:pw@localhost/nextcloud?socket=/run/mysqld/mysqld.sock",
            DatabaseTarget(
                "mysql", "nextcloud", "localhost", 3306, "nc", "pw", "/run/mysqld/mysqld.sock"
            ),
        ),
        (
            "sqlite:///var/www/nextcloud/data/owncloud.db",
            DatabaseTarget("sqlite", "/var/www/nextcloud/data/owncloud.db"),
        ),
    ],
)
def test_parse_url(url: str, expected: DatabaseTarget) -> None:
    target = parse_database_url(url)
    got = (target.dialect, target.database, target.host, target.port, target.user)
    want = (expected.dialect, expected.database, expected.host, expected.port, expected.user)
    assert got == want
    assert (target.password, target.socket, target.sslmode) == (
        expected.password,
        expected.socket,
        expected.sslmode,
    )


def test_target_repr_and_masked_url_hide_password() -> None:
    target = parse_database_url("postgres://nc:hunter2@db/nc")
    assert "hunter2" not in repr(target)
    assert "hunter2" not in target.masked
    assert "nc:***@db" in target.masked


@pytest.mark.parametrize(
    "url",
    [
        "http://db/nc",
        "postgres://nc@db:99999/nc",
        "postgres://nc@db/nc?sslmode=bogus",
        "mysql://nc@db",
        "mysql://nc@db/nc?socket=relative.sock",
        "sqlite://",
        "sqlite:///",
        "postgres://nc@db/a/b",
    ],
)
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_database_url(url)
    env = {"REDIS_URL": "redis://r", "NEXTCLOUD_URL": "https://cloud.example.com"}
    with pytest.raises(ConfigError) as info:
        load_config(["--database-url", url], env)
    assert info.value.option == "--database-url"


def test_unknown_query_parameter_is_ignored_with_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = parse_database_url("mysql://nc:pw@db/nc?ssl-mode=DISABLED")
    assert target.database == "nc"
    assert target.params == (("ssl-mode", "DISABLED"),)
    # The router warns when it opens the database.
    open_database(target, "oc_", pool_size=1, timeout=1, connect_timeout=1)
    assert "ssl-mode" in caplog.text
    assert "pw@" not in caplog.text


def test_prefix_validation_and_query_text() -> None:
    assert validate_prefix("") == ""
    assert validate_prefix("nc_2") == "nc_2"
    with pytest.raises(ValueError):
        validate_prefix("oc_`")
    assert mounts_query("postgres", "nc_") == (
        "SELECT m.user_id, f.path FROM nc_mounts m"
        " INNER JOIN nc_filecache f ON m.root_id = f.fileid WHERE m.storage_id = $1"
    )
    assert mounts_query("mysql", "oc_").endswith("= %s")
    assert mounts_query("sqlite", "oc_").endswith("= ?")


# -- the Nextcloud schema on each database --------------------------------------------------

MOUNTS_COLUMNS = {
    "id",
    "storage_id",
    "root_id",
    "user_id",
    "mount_point",
    "mount_id",
    "mount_provider_class",
    "mount_point_hash",
}
FILECACHE_COLUMNS = {
    "fileid",
    "storage",
    "path",
    "path_hash",
    "parent",
    "name",
    "mimetype",
    "mimepart",
    "size",
    "mtime",
    "storage_mtime",
    "encrypted",
    "unencrypted_size",
    "etag",
    "permissions",
    "checksum",
}
REQUIRED_INDEXES = {
    "mounts": {"mounts_storage_index", "mounts_root_index", "mounts_user_root_path_index"},
    "filecache": {"fs_storage_path_hash", "fs_parent_name_hash", "fs_parent"},
}


def _columns_and_indexes(db: SeededDatabase, table: str) -> tuple[set[str], set[str]]:
    full = f"{db.prefix}{table}"
    if db.dialect == "sqlite":
        path = db.url.removeprefix("sqlite://")
        conn = sqlite3.connect(path)
        try:
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({full})")}
            indexes = {row[1] for row in conn.execute(f"PRAGMA index_list({full})")}
        finally:
            conn.close()
        return columns, {i.removeprefix(db.prefix) for i in indexes}

    async def query_server() -> tuple[set[str], set[str]]:
        if db.dialect == "postgres":
            conn = await _pg_connect()
            try:
                cols = await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
                    full,
                )
                idx = await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE tablename = $1", full
                )
                return {r[0] for r in cols}, {r[0].removeprefix(db.prefix) for r in idx}
            finally:
                await conn.close()
        conn = await _my_connect()
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(f"SHOW COLUMNS FROM {full}")
                cols = {r[0] for r in await cursor.fetchall()}
                await cursor.execute(f"SHOW INDEX FROM {full}")
                idx = {r[2] for r in await cursor.fetchall()}
            return cols, idx
        finally:
            await conn.ensure_closed()

    return run(query_server())


def test_schema_has_nextcloud_columns_and_indexes(nextcloud_db: SeededDatabase) -> None:
    columns, indexes = _columns_and_indexes(nextcloud_db, "mounts")
    assert columns == MOUNTS_COLUMNS
    assert REQUIRED_INDEXES["mounts"] <= indexes
    columns, indexes = _columns_and_indexes(nextcloud_db, "filecache")
    assert columns == FILECACHE_COLUMNS
    assert REQUIRED_INDEXES["filecache"] <= indexes


def test_schema_unique_storage_path_hash(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "nc.db")
    schema.create_sqlite(conn, "oc_")
    schema.seed_sqlite(conn, [Mount("a", 1, "files")])
    with pytest.raises(sqlite3.IntegrityError):
        schema.seed_sqlite(conn, [Mount("b", 1, "files")])  # same (storage, path) again
    conn.close()


def test_demo_rows_build_the_folder_chain() -> None:
    filecache, mounts = schema.demo_rows([Mount("a", 7, "files/x/y"), Mount("b", 7, "files/x")])
    paths = {row[2]: (row[0], row[4]) for row in filecache}  # path: (fileid, parent)
    assert set(paths) == {"", "files", "files/x", "files/x/y"}
    assert paths[""][1] == -1
    assert paths["files/x/y"][1] == paths["files/x"][0]
    assert [(m[2], m[1]) for m in mounts] == [
        ("a", paths["files/x/y"][0]),
        ("b", paths["files/x"][0]),
    ]
    assert mounts[0][3] == "/a/files/y/"


# -- back ends directly -----------------------------------------------------------------------


def test_fetch_mounts_rows(nextcloud_db: SeededDatabase) -> None:
    nextcloud_db.seed([Mount("ann", 3, ""), Mount("ben", 3, "files/Shared"), Mount("cy", 4, "")])

    async def scenario() -> None:
        db = open_database(
            nextcloud_db.target,
            nextcloud_db.prefix,
            pool_size=2,
            timeout=timeout(5),
            connect_timeout=timeout(3),
        )
        try:
            assert sorted(await db.fetch_mounts(3)) == [("ann", ""), ("ben", "files/Shared")]
            assert await db.fetch_mounts(5) == []
        finally:
            await db.close()
        with pytest.raises(DatabaseUnavailable):
            await db.fetch_mounts(3)

    run(scenario())


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_pool_is_bounded(dialect: str) -> None:
    _require_server(dialect)  # type: ignore[arg-type]
    from tests.router.conftest import MYSQL_URL, POSTGRES_URL

    url = POSTGRES_URL if dialect == "postgres" else MYSQL_URL

    async def scenario() -> None:
        # No tables needed: a query that fails still borrows a connection.
        db = open_database(
            parse_database_url(url), random_prefix(), pool_size=2, timeout=5, connect_timeout=3
        )
        try:
            results = await asyncio.gather(
                *(db.fetch_mounts(i) for i in range(20)), return_exceptions=True
            )
            assert all(isinstance(r, DatabaseUnavailable) for r in results)
            pool = db._pool  # type: ignore[attr-defined]
            size = pool.get_size() if dialect == "postgres" else pool.size
            assert 1 <= size <= 2
        finally:
            await db.close()

    run(scenario())


@pytest.mark.parametrize(
    ("dialect", "socket_path"),
    [("postgres", "/var/run/postgresql"), ("mysql", "/run/mysqld/mysqld.sock")],
)
def test_unix_socket_urls(dialect: str, socket_path: str) -> None:
    _require_server(dialect)  # type: ignore[arg-type]
    probe = socket_path if dialect == "mysql" else os.path.join(socket_path, ".s.PGSQL.5432")
    if not os.path.exists(probe):
        pytest.skip(f"no {dialect} socket at {probe}")
    prefix = random_prefix()
    if dialect == "postgres":
        url = f"postgres://postgres@/test?host={socket_path}"
    else:
        url = f"mysql://root:@localhost/test?socket={socket_path}"

    async def scenario() -> None:
        db = open_database(
            parse_database_url(url), prefix, pool_size=1, timeout=5, connect_timeout=3
        )
        try:
            # Reaching the server is what matters: the tables do not exist, and the
            # error must say so (not "connection refused").
            with pytest.raises(DatabaseUnavailable, match=r"(?i)exist"):
                await db.fetch_mounts(1)
        finally:
            await db.close()

    run(scenario())


def test_sqlite_does_not_block_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "nc.db"
    with sqlite3.connect(path) as conn:
        schema.create_sqlite(conn, "oc_")
        schema.seed_sqlite(conn, [Mount("u", 1, "")])
    # Another writer holds an exclusive lock: the query must wait for it.
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")

    async def scenario() -> None:
        db = open_database(
            parse_database_url(f"sqlite://{path}"),
            "oc_",
            pool_size=1,
            timeout=timeout(10),
            connect_timeout=1,
        )
        try:
            fetch = asyncio.create_task(db.fetch_mounts(1))
            # The loop keeps running other work while the query waits on the lock.
            ticked = asyncio.Event()
            asyncio.get_running_loop().call_soon(ticked.set)
            await ticked.wait()
            assert not fetch.done()
            locker.execute("ROLLBACK")
            assert await fetch == [("u", "")]
        finally:
            await db.close()

    try:
        run(scenario())
    finally:
        locker.close()


def test_sqlite_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "nc.db"
    with sqlite3.connect(path) as conn:
        schema.create_sqlite(conn, "oc_")
    before = path.read_bytes()

    async def scenario() -> None:
        db = open_database(
            parse_database_url(f"sqlite://{path}"), "oc_", pool_size=1, timeout=5, connect_timeout=1
        )
        try:
            assert await db.fetch_mounts(1) == []
        finally:
            await db.close()

    run(scenario())
    assert path.read_bytes() == before


def test_missing_driver_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "asyncmy" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"asyncmy") as info:
        open_database(
            parse_database_url("mysql://nc:pw@db/nc"),
            "oc_",
            pool_size=1,
            timeout=1,
            connect_timeout=1,
        )
    assert info.value.option == "--database-url"
    assert "pw" not in str(info.value)
