"""StorageMapping: semantics against every database, caching and failures with fakes."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.databases import MountRow
from router.storage_mapping import (
    CACHE_TTL_MAX,
    CACHE_TTL_MIN,
    RETRY_MIN,
    MappingStatistics,
    StorageMapping,
)
from shared.config import load_config, parse_database_url
from shared.errors import ConfigError, DatabaseUnavailable
from tests.router.conftest import SeededDatabase, run
from tests.support.processes import timeout
from tests.support.stub_nextcloud.schema import Mount

# -- semantics, on SQLite, PostgreSQL and MariaDB ---------------------------------------

STORAGE = 10
OTHER = 11


def _standard_mounts() -> list[Mount]:
    return [
        Mount("alice", STORAGE, ""),
        Mount("bob", STORAGE, "files/Shared"),
        Mount("carol", STORAGE, "files/Other"),
        Mount("dave", OTHER, ""),
    ]


def test_prefix_match(nextcloud_db: SeededDatabase) -> None:
    nextcloud_db.seed(_standard_mounts())

    async def scenario() -> None:
        mapping = StorageMapping.from_target(nextcloud_db.target, nextcloud_db.prefix)
        try:
            assert sorted(await mapping.users_for(STORAGE, "files/Shared/a.txt")) == [
                "alice",
                "bob",
            ]
            assert sorted(await mapping.users_for(STORAGE, "files/Other")) == ["alice", "carol"]
            assert await mapping.users_for(STORAGE, "files/Elsewhere/x") == ["alice"]
            # A plain string prefix, as notify_push does: no path-segment logic.
            assert sorted(await mapping.users_for(STORAGE, "files/Sharedfoo")) == [
                "alice",
                "bob",
            ]
            # The root path itself is below nothing but the empty root.
            assert await mapping.users_for(STORAGE, "files") == ["alice"]
        finally:
            await mapping.close()

    run(scenario())


def test_empty_root_matches_every_path(nextcloud_db: SeededDatabase) -> None:
    nextcloud_db.seed(_standard_mounts())

    async def scenario() -> None:
        mapping = StorageMapping.from_target(nextcloud_db.target, nextcloud_db.prefix)
        try:
            for path in ("", "files", "files/x/y/z.txt", "cache/123", "ü/ñ"):
                assert await mapping.users_for(OTHER, path) == ["dave"]
            assert await mapping.root_user_count(OTHER) == 1
            # Only alice has storage 10 at its root.
            assert await mapping.root_user_count(STORAGE) == 1
        finally:
            await mapping.close()

    run(scenario())


def test_other_storage_is_not_mixed_in(nextcloud_db: SeededDatabase) -> None:
    nextcloud_db.seed(_standard_mounts())

    async def scenario() -> None:
        mapping = StorageMapping.from_target(nextcloud_db.target, nextcloud_db.prefix)
        try:
            assert "dave" not in await mapping.users_for(STORAGE, "files/a")
            assert await mapping.users_for(OTHER, "files/Shared/a") == ["dave"]
            assert await mapping.users_for(999, "files/a") == []
            assert await mapping.root_user_count(999) == 0
        finally:
            await mapping.close()

    run(scenario())


def test_many_users(nextcloud_db: SeededDatabase) -> None:
    users = [f"user{i:04}" for i in range(1000)]
    nextcloud_db.seed(
        [Mount(u, 20, "") for u in users] + [Mount(u, 20, "files/team") for u in users[:10]]
    )

    async def scenario() -> None:
        mapping = StorageMapping.from_target(nextcloud_db.target, nextcloud_db.prefix)
        try:
            result = await mapping.users_for(20, "files/team/plan.md")
            assert len(result) == 1000
            assert sorted(result) == users
            assert await mapping.root_user_count(20) == 1000
            assert mapping.statistics().query_count == 1
        finally:
            await mapping.close()

    run(scenario())


def test_user_with_two_mounts_appears_once(nextcloud_db: SeededDatabase) -> None:
    nextcloud_db.seed(
        [
            Mount("erin", 30, "files/A"),
            Mount("erin", 30, "files/A/B"),
            # Same root twice at different mount points (allowed by the unique
            # index on user_id, root_id, mount_point_hash).
            Mount("frank", 30, "files/A", mount_point="/frank/files/A/"),
            Mount("frank", 30, "files/A", mount_point="/frank/files/A (2)/"),
        ]
    )

    async def scenario() -> None:
        mapping = StorageMapping.from_target(nextcloud_db.target, nextcloud_db.prefix)
        try:
            assert sorted(await mapping.users_for(30, "files/A/B/c.txt")) == ["erin", "frank"]
            assert sorted(await mapping.users_for(30, "files/A/x")) == ["erin", "frank"]
        finally:
            await mapping.close()

    run(scenario())


def test_cache_hit_and_miss_counted(nextcloud_db: SeededDatabase) -> None:
    nextcloud_db.seed(_standard_mounts())

    async def scenario() -> None:
        mapping = StorageMapping.from_target(nextcloud_db.target, nextcloud_db.prefix)
        try:
            assert mapping.statistics() == MappingStatistics(0, 0, 0, True)
            await mapping.users_for(STORAGE, "files/a")
            await mapping.users_for(STORAGE, "files/b")
            await mapping.root_user_count(STORAGE)
            assert mapping.statistics().query_count == 1
            await mapping.users_for(OTHER, "files/a")
            assert mapping.statistics() == MappingStatistics(2, 0, 2, True)
        finally:
            await mapping.close()

    run(scenario())


def test_concurrent_misses_share_one_query(nextcloud_db: SeededDatabase) -> None:
    nextcloud_db.seed(_standard_mounts())

    async def scenario() -> None:
        mapping = StorageMapping.from_target(nextcloud_db.target, nextcloud_db.prefix)
        try:
            results = await asyncio.gather(
                *(mapping.users_for(STORAGE, "files/Shared/x") for _ in range(25))
            )
            assert all(sorted(r) == ["alice", "bob"] for r in results)
            assert mapping.statistics().query_count == 1
        finally:
            await mapping.close()

    run(scenario())


def test_missing_tables_raise_upstream_error(nextcloud_db: SeededDatabase) -> None:
    """A prefix with no tables behind it is a query error, counted, not a crash."""

    async def scenario() -> None:
        mapping = StorageMapping.from_target(nextcloud_db.target, "nosuchprefix_")
        try:
            with pytest.raises(DatabaseUnavailable):
                await mapping.users_for(STORAGE, "files/a")
            stats = mapping.statistics()
            assert (stats.query_count, stats.query_errors, stats.database_up) == (0, 1, False)
        finally:
            await mapping.close()

    run(scenario())


def test_default_prefix_on_sqlite(tmp_path: Path) -> None:
    import sqlite3

    from tests.support.stub_nextcloud import schema

    path = tmp_path / "owncloud.db"
    with sqlite3.connect(path) as conn:
        schema.create_sqlite(conn)
        schema.seed_sqlite(conn, [Mount("admin", 1, "")])
    mapping = StorageMapping.from_target(parse_database_url(f"sqlite://{path}"), "oc_")

    async def scenario() -> None:
        try:
            assert await mapping.users_for(1, "files/Readme.md") == ["admin"]
        finally:
            await mapping.close()

    run(scenario())


# -- the database is down ------------------------------------------------------------------


def _closed_port() -> int:
    # Bind then close: nothing listens there afterwards, so connects are refused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("scheme", ["postgres", "mysql"])
def test_database_down_gives_upstream_error(scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    url = f"{scheme}://gateway:s3cret-pw@127.0.0.1:{_closed_port()}/nextcloud"
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        mapping = StorageMapping.from_target(
            parse_database_url(url), "oc_", timeout=2.0, connect_timeout=1.0
        )
        try:
            async with asyncio.timeout(timeout(10)):
                with pytest.raises(DatabaseUnavailable):
                    await mapping.users_for(1, "files/a")
                # Within the back-off period: refused at once, no second query.
                with pytest.raises(DatabaseUnavailable):
                    await mapping.users_for(2, "files/a")
            stats = mapping.statistics()
            assert (stats.query_count, stats.query_errors, stats.database_up) == (0, 1, False)
        finally:
            await mapping.close()

    run(scenario())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "gateway:***@127.0.0.1" in warnings[0].getMessage()
    assert "s3cret-pw" not in caplog.text


def test_sqlite_file_missing_gives_upstream_error_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    mapping = StorageMapping.from_target(parse_database_url(f"sqlite://{path}"), "oc_")

    async def scenario() -> None:
        try:
            with pytest.raises(DatabaseUnavailable):
                await mapping.users_for(1, "")
        finally:
            await mapping.close()

    run(scenario())
    assert not path.exists()


# -- configuration -------------------------------------------------------------------------

CONFIG_ENV = {"REDIS_URL": "redis://r", "NEXTCLOUD_URL": "https://cloud.example.com"}


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost/0",
        "oracle://u:p@h/db",
        "postgres://u:p@h:notaport/db",
        "sqlite:///",
        "mysql://u:p@h:3306/",
        "",
    ],
)
def test_bad_url_is_config_error(url: str) -> None:
    # The configuration parses the URL; the mapping only ever gets a target.
    with pytest.raises(ConfigError) as info:
        load_config(["--database-url", url], CONFIG_ENV)
    assert info.value.option == "--database-url"
    assert "p@" not in str(info.value)


@pytest.mark.parametrize("prefix", ["oc-", "oc_; DROP TABLE x", "o c", "ö_", "x" * 65])
def test_bad_prefix_is_config_error(prefix: str) -> None:
    url = "sqlite:///var/lib/nextcloud/data/owncloud.db"
    with pytest.raises(ConfigError) as info:
        load_config(["--database-url", url, "--database-prefix", prefix], CONFIG_ENV)
    assert info.value.option == "--database-prefix"
    # The mapping refuses it too: the prefix is pasted into SQL.
    with pytest.raises(ValueError):
        StorageMapping.from_target(parse_database_url(url), prefix)


def test_unused_drivers_are_not_imported() -> None:
    code = (
        "import sys, asyncio\n"
        "from router.storage_mapping import StorageMapping\n"
        "from shared.config import parse_database_url as url\n"
        "m = StorageMapping.from_target(url('sqlite:///nonexistent/x.db'), 'oc_')\n"
        "asyncio.run(m.close())\n"
        "assert 'asyncpg' not in sys.modules and 'asyncmy' not in sys.modules, sys.modules\n"
        "StorageMapping.from_target(url('postgres://u:p@localhost/db'), 'oc_')\n"
        "assert 'asyncpg' not in sys.modules  # still lazy until the first query\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


# -- caching, single flight and failures, with a controllable fake database --------------------


class FakeDatabase:
    """A Database whose answers, failures and timing the test controls."""

    def __init__(self, rows: Sequence[MountRow]) -> None:
        self.rows = list(rows)
        self.calls = 0
        self.fail: DatabaseUnavailable | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self.closed = False

    async def fetch_mounts(self, storage: int) -> list[MountRow]:
        self.calls += 1
        self.finished.clear()
        self.started.set()
        try:
            await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            return list(self.rows)
        finally:
            self.finished.set()

    async def close(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_single_flight_while_query_is_slow() -> None:
    async def scenario() -> None:
        db = FakeDatabase([("u1", ""), ("u2", "files/x")])
        db.gate.clear()
        mapping = StorageMapping(db)
        callers = [asyncio.create_task(mapping.users_for(5, "files/x/y")) for _ in range(10)]
        await db.started.wait()
        # A later caller joins the query in flight instead of starting another.
        late = asyncio.create_task(mapping.users_for(5, ""))
        db.gate.set()
        results = await asyncio.gather(*callers)
        assert all(r == ["u1", "u2"] for r in results)
        assert await late == ["u1"]
        assert db.calls == 1
        assert mapping.statistics().query_count == 1
        await mapping.close()
        assert db.closed

    run(scenario())


def test_cancelled_caller_does_not_cancel_shared_query() -> None:
    async def scenario() -> None:
        db = FakeDatabase([("u1", "")])
        db.gate.clear()
        mapping = StorageMapping(db)
        first = asyncio.create_task(mapping.users_for(5, "a"))
        second = asyncio.create_task(mapping.users_for(5, "a"))
        await db.started.wait()
        first.cancel()
        db.gate.set()
        assert await second == ["u1"]
        assert first.cancelled()
        assert db.calls == 1
        await mapping.close()

    run(scenario())


def test_expired_entry_served_while_refreshing() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        db = FakeDatabase([("old", "")])
        mapping = StorageMapping(db, clock=clock)
        assert await mapping.users_for(5, "f") == ["old"]
        clock.now += CACHE_TTL_MAX  # every entry has expired by now
        db.rows = [("new", "")]
        db.gate.clear()
        db.started.clear()
        # The old entry answers at once; the refresh runs behind it.
        assert await mapping.users_for(5, "f") == ["old"]
        await db.started.wait()
        assert await mapping.users_for(5, "f") == ["old"]
        assert db.calls == 2  # the second stale read did not start another query
        db.gate.set()
        # The refresh stores its entry in the same step in which the query returns.
        await db.finished.wait()
        assert mapping.statistics().query_count == 2
        assert await mapping.users_for(5, "f") == ["new"]
        await mapping.close()

    run(scenario())


def test_entries_expire_between_four_and_five_minutes() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        db = FakeDatabase([("u", "")])
        mapping = StorageMapping(db, clock=clock)
        for storage in range(50):
            await mapping.users_for(storage, "")
        lifetimes = {e.expires_at - clock.now for e in mapping._cache.values()}
        assert all(CACHE_TTL_MIN <= t <= CACHE_TTL_MAX for t in lifetimes)
        assert len(lifetimes) > 1  # random per entry
        assert CACHE_TTL_MIN == 240.0 and CACHE_TTL_MAX == 300.0
        # Not expired: served without a query.
        clock.now += CACHE_TTL_MIN - 1
        for storage in range(50):
            await mapping.users_for(storage, "")
        assert db.calls == 50
        await mapping.close()

    run(scenario())


def test_outage_logged_once_then_recovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="router.storage_mapping")

    async def scenario() -> None:
        clock = FakeClock()
        db = FakeDatabase([("u", "")])
        mapping = StorageMapping(db, description="postgres://nc:***@db/nc", clock=clock)
        await mapping.users_for(1, "")  # cached before the outage
        db.fail = DatabaseUnavailable("connection refused")
        for attempt in range(3):
            if attempt:
                clock.now += RETRY_MIN * 2 ** (attempt - 1)  # just past the back-off
            with pytest.raises(DatabaseUnavailable):
                await mapping.users_for(100 + attempt, "")
        calls_during_outage = db.calls
        # Inside the back-off: refused without touching the database.
        with pytest.raises(DatabaseUnavailable):
            await mapping.users_for(200, "")
        assert db.calls == calls_during_outage
        # A cached storage keeps answering during the outage.
        assert await mapping.users_for(1, "x") == ["u"]
        stats = mapping.statistics()
        assert (stats.query_errors, stats.database_up) == (3, False)

        db.fail = None
        clock.now += 60
        assert await mapping.users_for(300, "") == ["u"]
        assert mapping.statistics().database_up
        await mapping.close()

    run(scenario())
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [lv for lv, _ in levels] == ["WARNING", "INFO"], levels
    assert "connection refused" in levels[0][1]


def test_close_cancels_query_in_flight() -> None:
    async def scenario() -> None:
        db = FakeDatabase([("u", "")])
        db.gate.clear()
        mapping = StorageMapping(db)
        caller = asyncio.create_task(mapping.users_for(1, ""))
        await db.started.wait()
        await mapping.close()
        with pytest.raises(asyncio.CancelledError):
            await caller
        with pytest.raises(DatabaseUnavailable):
            await mapping.users_for(1, "")

    run(scenario())


@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["", "f", "f/x", "g"])),
        max_size=12,
    ),
    path=st.sampled_from(["", "f", "f/x/y", "fx", "g/1", "h"]),
)
def test_matching_agrees_with_the_definition(rows: list[MountRow], path: str) -> None:
    async def scenario() -> list[str]:
        mapping = StorageMapping(FakeDatabase(rows))
        try:
            return await mapping.users_for(1, path)
        finally:
            await mapping.close()

    result = asyncio.run(scenario())
    assert len(result) == len(set(result))
    assert set(result) == {user for user, root in rows if path.startswith(root)}
