"""Killing parts of a running gateway: clients reconnect or keep receiving."""

from __future__ import annotations

import contextlib
import json
import os
import signal

import pytest
import redis

from tests.integration.conftest import USERS
from tests.support.client import Client
from tests.support.processes import Gateway, wait_for

pytestmark = pytest.mark.integration


def _custom(publisher: redis.Redis, user: str, message: str) -> None:
    publisher.publish("notify_custom", json.dumps({"user": user, "message": message}))


def test_killed_worker_is_replaced_and_new_logins_succeed(
    fresh_gateway: Gateway, clients: contextlib.ExitStack
) -> None:
    before = fresh_gateway.children()
    assert len(before) == 4, before
    os.kill(before["npg-worker-2"], signal.SIGKILL)
    wait_for(
        lambda: fresh_gateway.children().get("npg-worker-2") not in (None, before["npg-worker-2"]),
        15, "worker-2 to be restarted",
    )  # fmt: skip
    fresh_gateway.wait_ready()
    # Enough logins that every worker, the new one included, takes some.
    for _ in range(12):
        assert Client(clients, fresh_gateway.ws_url).login("bob", USERS["bob"]) == "authenticated"


def test_killed_router_is_replaced_and_existing_connections_receive_again(
    fresh_gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    connected = []
    for _ in range(6):  # spread over the workers
        client = Client(clients, fresh_gateway.ws_url)
        assert client.login("alice", USERS["alice"]) == "authenticated"
        connected.append(client)
    router = fresh_gateway.children()["npg-router"]
    os.kill(router, signal.SIGKILL)
    wait_for(
        lambda: fresh_gateway.children().get("npg-router") not in (None, router),
        15, "the router to be restarted",
    )  # fmt: skip
    fresh_gateway.wait_ready()
    _custom(publisher, "alice", "after-restart")
    for client in connected:
        assert client.recv() == "after-restart"


def test_sigterm_closes_clients_with_1001_and_exits_zero(
    fresh_gateway: Gateway, clients: contextlib.ExitStack
) -> None:
    client = Client(clients, fresh_gateway.ws_url)
    assert client.login("alice", USERS["alice"]) == "authenticated"
    fresh_gateway.process.send_signal(signal.SIGTERM)
    assert client.wait_closed() == 1001
    assert fresh_gateway.process.wait(timeout=15) == 0
