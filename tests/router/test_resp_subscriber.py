"""The lean subscriber against real redis-server processes: TCP, Unix socket, passwords, ACL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from router.resp_subscriber import Subscription, encode_command
from shared.config import parse_redis_url
from shared.errors import RedisUnavailable
from shared.redis_connection import RedisTls
from tests.support.processes import RedisServer, start_redis, timeout

pytestmark = pytest.mark.integration
PASSWORD = "p@ss w:rd/with%odd"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    workdir: Path = tmp_path_factory.mktemp("resp")
    server = start_redis(workdir, "--requirepass", PASSWORD)
    admin = redis.Redis(port=server.port, password=PASSWORD)
    admin.execute_command("ACL", "SETUSER", "pusher", "on", ">pusher-secret", "+@all", "&*", "~*")
    admin.close()
    yield server
    server.stop()


async def receive_one(url: str, port: int) -> tuple[bytes, bytes]:
    got: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue()
    sub = await Subscription.open(parse_redis_url(url), RedisTls(), ("chan-a", "chan-b"),
                                  lambda c, p: got.put_nowait((c, p)))  # fmt: skip
    try:
        publisher = redis.asyncio.Redis(port=port, password=PASSWORD)
        await publisher.publish("chan-b", b"hello \x00 bytes")
        await publisher.aclose()
        return await asyncio.wait_for(got.get(), timeout(5))
    finally:
        sub.close()


def test_encode_command() -> None:
    assert encode_command("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert encode_command("AUTH", "ü") == b"*2\r\n$4\r\nAUTH\r\n$2\r\n\xc3\xbc\r\n"


def test_password_over_tcp(secured: RedisServer) -> None:
    from urllib.parse import quote

    url = f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{secured.port}/0"
    assert asyncio.run(receive_one(url, secured.port)) == (b"chan-b", b"hello \x00 bytes")


def test_acl_user_over_unix_socket(secured: RedisServer) -> None:
    url = f"redis+unix://{secured.unixsocket}?user=pusher&pass=pusher-secret"
    assert asyncio.run(receive_one(url, secured.port)) == (b"chan-b", b"hello \x00 bytes")


def test_wrong_password_is_refused_without_echoing_it(secured: RedisServer) -> None:
    async def attempt() -> None:
        target = parse_redis_url(f"redis://:wrong-secret@127.0.0.1:{secured.port}/0")
        await Subscription.open(target, RedisTls(), ("c",), lambda c, p: None)

    with pytest.raises(RedisUnavailable) as info:
        asyncio.run(attempt())
    assert "wrong-secret" not in str(info.value)


def test_no_password_where_one_is_required(secured: RedisServer) -> None:
    async def attempt() -> None:
        target = parse_redis_url(f"redis://127.0.0.1:{secured.port}/0")
        await Subscription.open(target, RedisTls(), ("c",), lambda c, p: None)

    with pytest.raises(RedisUnavailable):
        asyncio.run(attempt())
