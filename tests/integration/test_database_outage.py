"""A database that is down: file events are dropped and counted, everything else flows."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import USERS
from tests.support.client import Client
from tests.support.processes import RedisServer, Stub, free_port, http_get, start_gateway, wait_for

pytestmark = pytest.mark.integration


def test_database_down_does_not_stall_other_events(
    tmp_path: Path, redis_server: RedisServer, stub: Stub, publisher: redis.Redis,
    clients: contextlib.ExitStack,
) -> None:  # fmt: skip
    metrics_port = free_port()
    closed_port = free_port()  # nothing listens there
    gateway = start_gateway(
        tmp_path, redis_url=redis_server.url, nextcloud_url=stub.url,
        database_url=f"postgres://nextcloud:db-secret@127.0.0.1:{closed_port}/nextcloud",
        workers=2, args=["--metrics-port", str(metrics_port)],
    )  # fmt: skip
    try:
        gateway.wait_ready()
        alice = Client(clients, gateway.ws_url)
        assert alice.login("alice", USERS["alice"]) == "authenticated"
        for i in range(20):
            publisher.publish(
                "notify_storage_update",
                json.dumps({"storage": 1, "path": f"files/{i}", "file_id": i}),
            )
            publisher.publish("notify_custom", json.dumps({"user": "alice", "message": f"c{i}"}))
        assert [alice.recv() for _ in range(20)] == [f"c{i}" for i in range(20)]
        bob = Client(clients, gateway.ws_url)
        assert bob.login("bob", USERS["bob"]) == "authenticated"

        def dropped() -> float:
            _status, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
            failed = 'notify_push_gateway_events_dropped_total{reason="mapping_failed"}'
            for line in body.splitlines():
                if line.startswith(failed):
                    return float(line.rpartition(" ")[2])
            return 0.0

        wait_for(lambda: dropped() >= 20, 20, "20 file events counted as dropped")
    finally:
        clients.close()
        assert gateway.stop() == 0, gateway.log()
    log = gateway.log()
    assert log.count("storage mapping") <= 2, log  # down once (and maybe never back)
    assert "db-secret" not in log
