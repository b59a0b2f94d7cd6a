"""Debounce through the running gateway (the exact timing rules are unit-tested)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import USERS, ready_gateway
from tests.support.client import Client
from tests.support.processes import (
    Gateway,
    RedisServer,
    Stub,
    free_port,
    http_get,
    wait_for,
)

pytestmark = pytest.mark.integration

PRIVATE_ALICE = 1000 + 60  # alice's own storage in the stub (after 60 generated users)


def storage_update(publisher: redis.Redis, file_id: int) -> None:
    publisher.publish(
        "notify_storage_update",
        json.dumps({"storage": PRIVATE_ALICE, "path": f"files/{file_id}", "file_id": file_id}),
    )


def test_file_messages_are_merged_then_released(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    alice = Client(clients, gateway.ws_url)
    assert alice.login("alice", USERS["alice"], "listen notify_file_id") == "authenticated"
    plain = Client(clients, gateway.ws_url)
    assert plain.login("alice", USERS["alice"]) == "authenticated"
    for file_id in (11, 12, 11, 13):
        storage_update(publisher, file_id)
    assert alice.recv() == "notify_file_id [11,12,13]"
    assert plain.recv() == "notify_file"
    # Nothing was left queued: the next event arrives alone, after the debounce time.
    storage_update(publisher, 14)
    assert alice.recv() == "notify_file_id [14]"
    assert plain.recv() == "notify_file"


def test_activity_burst_becomes_one_message(
    gateway: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    bob = Client(clients, gateway.ws_url)
    assert bob.login("bob", USERS["bob"]) == "authenticated"
    for _ in range(5):
        publisher.publish("notify_activity", json.dumps({"user": "bob"}))
    assert bob.recv() == "notify_activity"
    publisher.publish("notify_notification", json.dumps({"user": "bob"}))
    # Had a second activity been queued it would come out before this one.
    assert bob.recv() == "notify_notification"


@pytest.fixture(scope="module")
def undebounced(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path
) -> Iterator[Gateway]:
    gw = ready_gateway(workdir, redis_server, stub, database, 2, env={"DEBOUNCE_DISABLE": "1"})
    yield gw
    assert gw.stop() == 0, gw.log()


def test_debounce_disable_sends_every_message(
    undebounced: Gateway, clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    alice = Client(clients, undebounced.ws_url)
    assert alice.login("alice", USERS["alice"], "listen notify_file_id") == "authenticated"
    for file_id in (21, 22, 23):
        storage_update(publisher, file_id)
    assert [alice.recv() for _ in range(3)] == [f"notify_file_id [{i}]" for i in (21, 22, 23)]


def test_debounce_time_uses_the_gateway_wide_connection_count(
    workdir: Path, redis_server: RedisServer, stub: Stub, database: Path,
    clients: contextlib.ExitStack,
) -> None:  # fmt: skip
    metrics_port = free_port()
    gw = ready_gateway(
        workdir, redis_server, stub, database, 3, args=["--metrics-port", str(metrics_port)]
    )
    try:
        for i in range(40):
            user = f"user{i}"
            assert Client(clients, gw.ws_url).login(user, f"password-{user}") == "authenticated"

        def every_worker_uses_40() -> bool:
            _status, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
            bases = [line for line in body.splitlines()
                     if line.startswith("notify_push_gateway_debounce_base_seconds{")]  # fmt: skip
            # T = max(1, min(40 // 10, 15)) = 4 s in every worker, not 40/3 of it.
            return len(bases) == 3 and all(line.endswith(" 4.0") for line in bases)

        wait_for(every_worker_uses_40, 15, "every worker to debounce with T = 4 s")
    finally:
        clients.close()
        assert gw.stop() == 0, gw.log()
