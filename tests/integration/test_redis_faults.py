"""Redis-side faults: payloads that cannot be sent on, repeated outages, query floods."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import USERS
from tests.support.client import Client
from tests.support.processes import (
    Gateway,
    RedisServer,
    Stub,
    free_port,
    http_get,
    scrape_metrics,
    start_gateway,
    start_redis,
    wait_for,
)

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    redis: RedisServer
    gateway: Gateway
    metrics_url: str

    def publisher(self) -> redis.Redis:
        return redis.Redis(port=self.redis.port)

    def metric(self, name: str) -> float:
        return scrape_metrics(self.metrics_url).get(name, -1.0)


@pytest.fixture
def own_stack(tmp_path: Path, stub: Stub, database: Path) -> Iterator[Stack]:
    """A gateway on a redis-server of this test's own, which the test may stop."""
    server = start_redis(tmp_path)
    metrics_port = free_port()
    gateway = start_gateway(
        tmp_path, redis_url=server.url, nextcloud_url=stub.url,
        database_url=f"sqlite://{database}", workers=2,
        args=["--metrics-port", str(metrics_port)],
    )  # fmt: skip
    stack = Stack(server, gateway, f"http://127.0.0.1:{metrics_port}/metrics")
    try:
        gateway.wait_ready()
        yield stack
    finally:
        gateway.stop()
        if stack.redis.process.poll() is None:
            stack.redis.stop()


def restart_redis(stack: Stack, workdir: Path) -> None:
    """The same port again, as a restarted Redis would be."""
    port = stack.redis.port
    stack.redis.stop()
    wait_for(lambda: http_get(f"{stack.gateway.http_url}/readyz")[0] == 503, 30, "/readyz 503")
    # Let the gateway retry a few times while Redis is away, as in a real outage.
    reconnects = stack.metric("notify_push_gateway_redis_reconnects_total")
    wait_for(
        lambda: stack.metric("notify_push_gateway_redis_reconnects_total") >= reconnects + 5,
        60, "the gateway to retry while Redis is down",
    )  # fmt: skip
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stack.redis = RedisServer(port, process, stack.redis.unixsocket)


def test_a_payload_that_cannot_be_encoded_never_drops_the_subscription(
    own_stack: Stack, clients: contextlib.ExitStack
) -> None:
    alice = Client(clients, own_stack.gateway.ws_url)
    assert alice.login("alice", USERS["alice"]) == "authenticated"
    publisher = own_stack.publisher()
    try:
        for i in range(20):
            # A JSON escape of a lone surrogate: valid JSON, not valid Unicode.
            publisher.publish(
                "notify_custom", b'{"user": "alice", "message": "x", "body": "\\ud800"}'
            )
            publisher.publish("notify_custom", b'{"user": "\\ud800", "message": "y"}')
            publisher.publish("notify_custom", json.dumps({"user": "alice", "message": f"ok{i}"}))
    finally:
        publisher.close()
    assert [alice.recv() for _ in range(20)] == [f"ok{i}" for i in range(20)]
    log = own_stack.gateway.log()
    assert "Redis subscription on" not in log, log
    assert log.count("dropping invalid event") == 1, log  # one warning, the rest counted
    assert own_stack.metric('notify_push_gateway_events_dropped_total{reason="invalid"}') == 40


def test_the_subscription_is_back_quickly_after_every_outage(
    own_stack: Stack, tmp_path: Path, clients: contextlib.ExitStack
) -> None:
    alice = Client(clients, own_stack.gateway.ws_url)
    assert alice.login("alice", USERS["alice"]) == "authenticated"
    for outage in range(2):
        restart_redis(own_stack, tmp_path)
        # Redis answers again: the gateway is subscribed within seconds, every time,
        # not after a back-off that grew during the earlier outage.
        wait_for(lambda: http_get(f"{own_stack.gateway.http_url}/readyz")[0] == 200, 4,
                 f"/readyz 200 after outage {outage + 1}")  # fmt: skip
    publisher = own_stack.publisher()
    try:
        publisher.publish("notify_custom", json.dumps({"user": "alice", "message": "back"}))
    finally:
        publisher.close()
    assert alice.recv() == "back"
    log = own_stack.gateway.log()
    assert log.count("Redis subscription on") == 2, log  # one warning per outage


def test_a_query_flood_gets_coalesced_answers_on_few_connections(own_stack: Stack) -> None:
    publisher = own_stack.publisher()
    try:
        before = len(publisher.client_list())
        pipe = publisher.pipeline(transaction=False)
        for _ in range(20_000):
            pipe.publish("notify_query", '"metrics"')
        pipe.execute()
        publisher.delete("notify_push_metrics")

        def answered() -> bool:
            publisher.publish("notify_query", '"metrics"')
            return publisher.get("notify_push_metrics") is not None

        wait_for(answered, 30, "an answer after the flood")
        # A few connections at most (one answer in flight at a time), not one per query.
        assert len(publisher.client_list()) <= before + 3
    finally:
        publisher.close()
    log = own_stack.gateway.log()
    assert log.count("WARNING") < 10, log
