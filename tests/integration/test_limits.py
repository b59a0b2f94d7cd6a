"""Per-user connection limit, authentication timeout, maximum connection time."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import USERS, ready_gateway
from tests.support.client import Client
from tests.support.processes import Gateway, RedisServer, Stub

pytestmark = pytest.mark.integration


def test_65th_connection_of_a_user_is_refused_across_workers(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    conns = []
    for _ in range(64):
        client = Client(clients, gateway.ws_url)
        assert client.login("carol", USERS["carol"]) == "authenticated"
        conns.append(client)
    refused = Client(clients, gateway.ws_url)
    answer = refused.login("carol", USERS["carol"])
    assert answer.startswith("err: ")
    assert refused.wait_closed() is not None
    publisher.publish("notify_custom", json.dumps({"user": "carol", "message": "still-here"}))
    for client in conns:
        assert client.recv() == "still-here"
    # Closing one frees a place for a new one.
    conns.pop().ws.close()
    from tests.support.processes import wait_for

    def admitted() -> bool:
        with contextlib.ExitStack() as stack:
            return Client(stack, gateway.ws_url).login("carol", USERS["carol"]) == "authenticated"

    wait_for(admitted, 10, "a place for carol after one of her connections closed")


@pytest.fixture(scope="module")
def short_lived(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path
) -> Iterator[Gateway]:
    gw = ready_gateway(workdir, redis_server, stub, database, 2, env={"MAX_CONNECTION_TIME": "1"})
    yield gw
    assert gw.stop() == 0, gw.log()


def test_max_connection_time_closes_the_connection(
    short_lived: Gateway, clients: contextlib.ExitStack
) -> None:
    client = Client(clients, short_lived.ws_url)
    assert client.login("alice", USERS["alice"]) == "authenticated"
    assert client.wait_closed(seconds=10) == 1000


@pytest.fixture(scope="module")
def impatient(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path
) -> Iterator[Gateway]:
    """A gateway that waits only a second for logins, instead of the real 15 s."""
    gw = ready_gateway(workdir, redis_server, stub, database, 2, env={"AUTH_TIMEOUT": "1"})
    yield gw
    assert gw.stop() == 0, gw.log()


def test_silent_client_gets_authentication_timeout(
    impatient: Gateway, clients: contextlib.ExitStack
) -> None:
    client = Client(clients, impatient.ws_url)
    client.send("alice")  # and never the password
    assert client.recv(seconds=30) == "Authentication timeout"
    assert client.wait_closed() is not None


def test_connection_that_never_completes_the_handshake_is_closed(impatient: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # head never finished
        assert sock.recv(1024) == b""  # closed by the server after the auth timeout
