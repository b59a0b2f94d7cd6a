"""Redis going away and coming back: readiness drops, nothing crashes, events flow again."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import USERS
from tests.support.client import Client
from tests.support.processes import Stub, http_get, start_gateway, start_redis, wait_for

pytestmark = pytest.mark.integration


def test_gateway_survives_a_redis_restart(
    tmp_path: Path, stub: Stub, database: Path, clients: contextlib.ExitStack
) -> None:
    own = start_redis(tmp_path)
    gateway = start_gateway(
        tmp_path, redis_url=own.url, nextcloud_url=stub.url,
        database_url=f"sqlite://{database}", workers=2,
    )  # fmt: skip
    try:
        gateway.wait_ready()
        alice = Client(clients, gateway.ws_url)
        assert alice.login("alice", USERS["alice"]) == "authenticated"
        port = own.port
        own.stop()
        wait_for(lambda: http_get(f"{gateway.http_url}/readyz")[0] == 503, 30, "/readyz 503")
        assert "not subscribed to redis" in http_get(f"{gateway.http_url}/readyz")[1]
        # A login needs its claim in Redis: refused clearly, in bounded time.
        late = Client(clients, gateway.ws_url)
        assert (
            late.login("bob", USERS["bob"])
            == "err: Push server unavailable: Redis is not reachable"
        )
        # The same port again, as a restarted Redis would be.
        restarted = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            gateway.wait_ready(seconds=30)
            publisher = redis.Redis(port=port)
            publisher.publish("notify_custom", json.dumps({"user": "alice", "message": "back"}))
            publisher.close()
            assert alice.recv() == "back"  # the connection lived through the outage
            assert gateway.process.poll() is None
            clients.close()
            assert gateway.stop() == 0
        finally:
            restarted.terminate()
            restarted.wait()
    finally:
        clients.close()
        gateway.stop()
    log = gateway.log()
    assert log.count("Redis subscription on") == 1, log  # one warning per outage
