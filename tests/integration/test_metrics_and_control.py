"""Metrics, notify_query, notify_signal and notify_config through the running gateway."""

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
    scrape_metrics,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=[1, 3], ids=["1worker", "3workers"])
def metered(
    request: pytest.FixtureRequest, workdir: Path, redis_server: RedisServer, stub: Stub,
    database: Path,
) -> Iterator[tuple[Gateway, int]]:  # fmt: skip
    port = free_port()
    gw = ready_gateway(
        workdir, redis_server, stub, database, request.param, args=["--metrics-port", str(port)]
    )
    yield gw, port
    assert gw.stop() == 0, gw.log()


def scrape(port: int) -> dict[str, float]:
    return scrape_metrics(f"http://127.0.0.1:{port}/metrics")


def test_metrics_sum_over_workers(
    metered: tuple[Gateway, int], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    gateway, port = metered
    conns = []
    for _ in range(6):
        client = Client(clients, gateway.ws_url)
        assert client.login("bob", USERS["bob"]) == "authenticated"
        conns.append(client)
    publisher.publish("notify_activity", json.dumps({"user": "bob"}))
    publisher.publish("notify_custom", json.dumps({"user": "bob", "message": "m"}))
    for client in conns:
        assert sorted([client.recv(), client.recv()]) == ["m", "notify_activity"]

    def counted() -> bool:
        v = scrape(port)
        return (
            v.get("active_connection_count") == 6
            and v.get('message_count_total{type="custom"}') == 6
            and v.get('message_count_total{type="activity"}') == 6
        )

    wait_for(counted, 15, "metrics to count 6 connections and 12 messages")
    v = scrape(port)
    assert v["active_user_count"] == 1
    assert v["message_count_total"] == 12
    assert v["event_count_total"] >= 2
    assert v["notify_push_gateway_redis_subscribed"] == 1
    per_worker = sum(
        val for k, val in v.items() if k.startswith("notify_push_gateway_worker_connections")
    )
    assert per_worker == 6
    assert v["notify_push_gateway_delivery_latency_seconds_count"] >= 1
    _status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert "# TYPE active_connection_count gauge" in body

    publisher.delete("notify_push_metrics")
    publisher.publish("notify_query", '"metrics"')
    wait_for(lambda: publisher.get("notify_push_metrics") is not None, 10, "notify_push_metrics")
    stored = json.loads(publisher.get("notify_push_metrics") or b"{}")
    assert set(stored) == {
        "active_connection_count", "active_user_count", "total_connection_count",
        "mapping_query_count", "events_received", "messages_sent", "messages_sent_file",
        "messages_sent_activity", "messages_sent_notification", "messages_sent_custom",
    }  # fmt: skip
    assert stored["active_connection_count"] == 6
    assert stored["messages_sent_custom"] == 6


def test_reset_closes_every_connection_in_every_worker(
    metered: tuple[Gateway, int], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    gateway, _port = metered
    conns = []
    for user in ("alice", "bob", "carol") * 3:
        client = Client(clients, gateway.ws_url)
        assert client.login(user, USERS[user]) == "authenticated"
        conns.append(client)
    publisher.publish("notify_signal", '"reset"')
    for client in conns:
        assert client.wait_closed() is not None
    # The gateway itself stays up and accepts new logins.
    assert Client(clients, gateway.ws_url).login("alice", USERS["alice"]) == "authenticated"


def test_log_level_changes_in_every_process_and_restores(
    metered: tuple[Gateway, int], clients: contextlib.ExitStack, publisher: redis.Redis
) -> None:
    gateway, _port = metered
    start = len(gateway.log())
    publisher.publish("notify_config", json.dumps({"log_spec": "debug"}))
    processes = ["router"] + [f"worker-{w}" for w in range(1, gateway.workers + 1)]

    def debug_everywhere() -> bool:
        # Connections log their state changes at debug in whichever worker takes them;
        # the router logs each event at debug.
        with contextlib.ExitStack() as stack:
            for _ in range(6):
                Client(stack, gateway.ws_url)
        publisher.publish("notify_activity", json.dumps({"user": "nobody"}))
        log = gateway.log()[start:]
        return all(f"DEBUG {name} " in log for name in processes)

    wait_for(debug_everywhere, 20, "debug lines from the router and every worker")
    publisher.publish("notify_config", '"log_restore"')

    def quiet_again() -> bool:
        mark = len(gateway.log())
        with contextlib.ExitStack() as stack:
            for _ in range(6):
                Client(stack, gateway.ws_url)
        publisher.publish("notify_activity", json.dumps({"user": "nobody"}))
        with contextlib.ExitStack() as stack:
            Client(stack, gateway.ws_url)  # a round trip after the event
        return "DEBUG" not in gateway.log()[mark:]

    wait_for(quiet_again, 20, "the configured level to be restored everywhere")
