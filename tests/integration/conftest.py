from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from tests.support.processes import (
    Gateway,
    RedisServer,
    Stub,
    start_gateway,
    start_redis,
    start_stub,
)

USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
GENERATED_USERS = 60  # user0-49: the many-users test; user50+: tests of their own


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = start_redis(workdir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database(workdir: Path) -> Path:
    return workdir / "nextcloud.db"


@pytest.fixture(scope="session")
def stub(database: Path, redis_server: RedisServer) -> Iterator[Stub]:
    server = start_stub(database, redis_server.url, USERS, GENERATED_USERS)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def publisher(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


def ready_gateway(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path, workers: int,
    *, env: dict[str, str] | None = None, args: Sequence[str] = (),
) -> Gateway:  # fmt: skip
    """A gateway on the session's Redis, stub Nextcloud and SQLite database, ready to serve."""
    gateway = start_gateway(
        workdir, redis_url=redis_server.url, nextcloud_url=stub.url,
        database_url=f"sqlite://{database}", workers=workers, env=env, args=args,
    )  # fmt: skip
    gateway.wait_ready()
    return gateway


@pytest.fixture(scope="module", params=[1, 3], ids=["1worker", "3workers"])
def gateway(
    request: pytest.FixtureRequest, workdir: Path, redis_server: RedisServer, stub: Stub,
    database: Path,
) -> Iterator[Gateway]:  # fmt: skip
    gw = ready_gateway(workdir, redis_server, stub, database, request.param)
    yield gw
    assert gw.stop() == 0, gw.log()


@pytest.fixture
def fresh_gateway(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path
) -> Iterator[Gateway]:
    """A 3-worker gateway of this test's own, for tests that kill parts of it."""
    gw = ready_gateway(workdir, redis_server, stub, database, 3)
    yield gw
    gw.stop()


@pytest.fixture
def clients() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack
